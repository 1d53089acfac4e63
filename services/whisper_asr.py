"""Speech recognition with faster-whisper (CTranslate2), in this process.

``model`` is a CTranslate2 model folder on disk or a hub repository id such as
``Systran/faster-whisper-small``; hub models live under the models directory once downloaded,
and this adapter never reaches for the network itself.

Parking uses CTranslate2's own: ``unload_model(to_cpu=True)`` copies a CUDA model's weights to
host RAM and frees the device, and ``load_model()`` copies them back (CTranslate2's
``python/cpp/replica_pool.h``). On a CPU model that call returns at once and the model stays
as it is, so a parked CPU engine keeps its weights where they were and only stops serving.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from services.base import EngineSpec, ModelArtifact, Role, Segment
from services.errors import EngineCallError, InvalidInput
from services.in_process import InProcessEngine
from services.model_ref import local_path
from services.threads import iterate_in_thread

SAMPLE_RATE = 16_000
_REQUIRED = ("config.json", "model.bin", "tokenizer.json")
_PATTERNS = (*_REQUIRED, "preprocessor_config.json", "vocabulary.*")


class WhisperEngine(InProcessEngine):
    role = Role.ASR

    def __init__(self, spec: EngineSpec) -> None:
        super().__init__(spec)
        self._model: Any = None

    def artifacts(self) -> list[ModelArtifact]:
        if local_path(self.spec.model) is not None:
            return []
        return [ModelArtifact(self.spec.model, _PATTERNS, _REQUIRED)]

    def _model_dir(self) -> Path:
        path = local_path(self.spec.model)
        if path is not None:
            return path
        return self.artifacts()[0].local_dir(self.spec.models_dir)

    def _model_paths(self) -> list[Path]:
        folder = self._model_dir()
        return [folder / name for name in _REQUIRED]

    def _load_model(self) -> None:
        from faster_whisper import WhisperModel

        options = self.spec.options
        self._model = WhisperModel(
            str(self._model_dir()),
            device=self.spec.device_kind,
            device_index=self.spec.device_index or 0,
            compute_type=self.spec.compute_type,
            cpu_threads=int(options.get("cpu_threads", 0)),
            num_workers=int(options.get("num_workers", 1)),
            local_files_only=True,
        )

    def _release_model(self) -> None:
        self._model = None

    park_refusal = None

    def _park_model(self) -> None:
        whisper = self._model.model  # the ctranslate2.models.Whisper under faster-whisper
        whisper.unload_model(to_cpu=True)
        if self.spec.device != "cpu" and whisper.model_is_loaded:
            # CTranslate2 declines silently while a batch runs or another thread holds it
            raise RuntimeError("CTranslate2 kept the model on the device: it is in use")

    def _resume_model(self) -> None:
        whisper = self._model.model
        if not whisper.model_is_loaded:
            whisper.load_model()  # from the host-RAM copy parking made

    def _is_loaded(self) -> bool:
        return self._model is not None

    translates = True  # Whisper's own translate task: speech in any language -> English text

    async def transcribe(
        self,
        audio: npt.NDArray[np.float32],
        *,
        language: str | None = None,
        task: Literal["transcribe", "translate"] = "transcribe",
    ) -> AsyncGenerator[Segment, None]:
        """Stream segments of mono 16 kHz float32 audio in [-1, 1] as they are decoded; each
        carries the language given, or the one Whisper detected."""
        self._require_loaded()
        samples = _validated(audio)
        model = self._model
        beam_size = int(self.spec.options.get("beam_size", 1))

        def decode() -> Iterator[Segment]:
            try:
                segments, info = model.transcribe(
                    samples, language=language, task=task, beam_size=beam_size, vad_filter=False
                )
                for seg in segments:
                    yield Segment(
                        start=float(seg.start),
                        end=float(seg.end),
                        text=seg.text,
                        no_speech_prob=float(seg.no_speech_prob),
                        language=language or info.language,
                    )
            except (RuntimeError, ValueError) as exc:
                raise EngineCallError(f"transcription failed: {exc}", engine=self.name) from exc

        async with aclosing(iterate_in_thread(decode)) as stream:
            async for segment in stream:
                yield segment


def _validated(audio: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    array = np.asarray(audio)
    if array.ndim != 1:
        raise InvalidInput(f"audio must be mono (1-D), got shape {array.shape}")
    if array.size == 0:
        raise InvalidInput("audio is empty")
    if not np.issubdtype(array.dtype, np.floating):
        raise InvalidInput(f"audio must be float samples in [-1, 1], got {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise InvalidInput("audio contains NaN or infinite samples")
    return array.astype(np.float32, copy=False)
