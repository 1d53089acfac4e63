"""Text to speech with Piper (ONNX runtime), in this process.

``model`` is a ``.onnx`` voice on disk (its config beside it as ``.onnx.json``) or a voice name
from the ``rhasspy/piper-voices`` hub repository such as ``en_US-lessac-medium``. Piper yields one
chunk per sentence, which is the unit we stream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

from services.base import AudioChunk, EngineSpec, ModelArtifact, Role
from services.errors import EngineCallError, InvalidInput
from services.espeak_voice import remember_voice
from services.in_process import InProcessEngine
from services.model_ref import local_path
from services.threads import iterate_in_thread

VOICES_REPO = "rhasspy/piper-voices"
MAX_TEXT_CHARS = 10_000


def voice_repo_path(voice: str) -> str:
    """Where a voice such as ``en_US-lessac-medium`` lives inside the piper-voices repository."""
    try:
        locale, name, quality = voice.split("-", 2)
        language = locale.split("_", 1)[0]
    except ValueError as exc:
        raise ValueError(
            f"{voice!r} is neither a path nor a Piper voice name like 'en_US-lessac-medium'"
        ) from exc
    return f"{language}/{locale}/{name}/{quality}/{voice}.onnx"


class PiperEngine(InProcessEngine):
    role = Role.TTS

    def __init__(self, spec: EngineSpec) -> None:
        super().__init__(spec)
        self._voice: Any = None

    def artifacts(self) -> list[ModelArtifact]:
        if local_path(self.spec.model) is not None:
            return []
        onnx = voice_repo_path(self.spec.model)
        files = (onnx, f"{onnx}.json")
        return [ModelArtifact(VOICES_REPO, files, files)]

    def _onnx_path(self) -> Path:
        path = local_path(self.spec.model)
        if path is not None:
            return path
        artifact = self.artifacts()[0]
        return artifact.local_dir(self.spec.models_dir) / artifact.required_files[0]

    def _model_paths(self) -> list[Path]:
        onnx = self._onnx_path()
        return [onnx, onnx.with_name(onnx.name + ".json")]

    def _load_model(self) -> None:
        """Piper's own ``PiperVoice.load``, but for one session option: ONNX Runtime's memory
        pattern (a memory plan it keeps for each input shape) is off. A sentence's phoneme count
        makes a new shape nearly every call, so the plans piled up for as long as the server
        ran (about 20 MB of RSS in a 90-minute lesson); planning each run costs no measurable
        time here."""
        import onnxruntime
        from piper import PiperVoice, espeakbridge
        from piper.config import PiperConfig

        remember_voice(espeakbridge)  # espeak-ng leaks in every voice change Piper asks for

        if self.spec.device_index:  # Piper hands onnxruntime no device id: its CUDA is GPU 0
            raise ValueError(f"piper runs on cuda:0 only, not {self.spec.device}")
        onnx = self._onnx_path()
        config = json.loads(onnx.with_name(onnx.name + ".json").read_text(encoding="utf-8"))
        options = onnxruntime.SessionOptions()
        options.enable_mem_pattern = False
        providers: list[Any] = ["CPUExecutionProvider"]
        if self.spec.device_kind == "cuda":  # as Piper asks for CUDA
            providers = [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})]
        session = onnxruntime.InferenceSession(str(onnx), sess_options=options, providers=providers)
        self._voice = PiperVoice(
            session=session,
            config=PiperConfig.from_dict(config),
            download_dir=Path(self.spec.models_dir),
        )

    def _release_model(self) -> None:
        self._voice = None

    # An ONNX Runtime session cannot hand its weights to host RAM and take them back.
    park_refusal = "Piper (ONNX Runtime) has no parked state"

    def _is_loaded(self) -> bool:
        return self._voice is not None

    @property
    def sample_rate(self) -> int:
        self._require_loaded()
        return int(self._voice.config.sample_rate)

    def voices(self) -> list[str]:
        """Speaker names of a multi-speaker voice (empty for single-speaker voices)."""
        self._require_loaded()
        return sorted(self._voice.config.speaker_id_map or {})

    native_speed = True  # Piper's length scale: the pace changes, the pitch does not

    async def synthesize(
        self, text: str, *, voice: str | None = None, speed: float = 1.0
    ) -> AsyncGenerator[AudioChunk, None]:
        """Stream PCM16 audio, one chunk per sentence, as each sentence is synthesised;
        ``speed`` 2 speaks twice as fast (the voice's length scale divided by it)."""
        self._require_loaded()
        if not text.strip():
            raise InvalidInput("text is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise InvalidInput(f"text is {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
        if not 0.25 <= speed <= 4.0:
            raise InvalidInput(f"speed {speed} is outside 0.25-4.0")
        piper_voice = self._voice
        syn_config = self._synthesis_config(voice, speed)

        def run() -> Iterator[AudioChunk]:
            try:
                for chunk in piper_voice.synthesize(text, syn_config=syn_config):
                    yield AudioChunk(pcm16=chunk.audio_int16_bytes, sample_rate=chunk.sample_rate)
            except (RuntimeError, ValueError) as exc:
                raise EngineCallError(f"synthesis failed: {exc}", engine=self.name) from exc

        async with aclosing(iterate_in_thread(run)) as stream:
            async for chunk in stream:
                yield chunk

    def _synthesis_config(self, voice: str | None, speed: float = 1.0) -> Any:
        from piper import SynthesisConfig

        speakers = self._voice.config.speaker_id_map or {}
        speaker_id: int | None = None
        if voice is not None and speakers:
            if voice not in speakers:
                raise InvalidInput(f"unknown speaker {voice!r}; this voice has {sorted(speakers)}")
            speaker_id = int(speakers[voice])
        options = self.spec.options
        length_scale = options.get("length_scale")
        if speed != 1.0:
            base = length_scale or self._voice.config.length_scale or 1.0
            length_scale = float(base) / speed
        return SynthesisConfig(
            speaker_id=speaker_id,
            length_scale=length_scale,
            noise_scale=options.get("noise_scale"),
            noise_w_scale=options.get("noise_w_scale"),
        )
