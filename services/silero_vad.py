"""Voice activity detection with Silero VAD: the ONNX model bundled in faster-whisper.

``model = "bundled"`` loads the copy shipped inside the faster-whisper package (no download);
a path loads another Silero export with the same interface (v5/v6: 512-sample frames at
16 kHz, a 64-sample context, LSTM state ``h``/``c``). One ``SileroStream`` per audio stream keeps
that state between frames; the session itself is shared. It keeps the VAD role's contract
(``services.base.VoiceActivityDetector``): the frame size and rate are the engine's.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from services.base import EngineSpec, ModelArtifact, Role
from services.errors import InvalidInput
from services.in_process import InProcessEngine

SAMPLE_RATE = 16_000
FRAME_SAMPLES = 512  # 32 ms
CONTEXT_SAMPLES = 64
BUNDLED = "bundled"


def bundled_model_path() -> Path:
    from faster_whisper.utils import get_assets_path

    return Path(get_assets_path()) / "silero_vad_v6.onnx"


class SileroStream:
    """Speech probability frame by frame for one audio stream."""

    def __init__(self, session: Any, lock: threading.Lock) -> None:
        self._session = session
        self._lock = lock
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)

    def probability(self, frame: npt.NDArray[np.float32]) -> float:
        """Blocking (a fraction of a millisecond): the chance that this 32 ms frame is speech."""
        if frame.shape != (FRAME_SAMPLES,):
            raise InvalidInput(f"VAD frames are {FRAME_SAMPLES} samples, got {frame.shape}")
        window = np.concatenate([self._context, frame.astype(np.float32, copy=False)])[None, :]
        with self._lock:
            probs, self._h, self._c = self._session.run(
                None, {"input": window, "h": self._h, "c": self._c}
            )
        self._context = frame[-CONTEXT_SAMPLES:].astype(np.float32)
        return float(np.asarray(probs).reshape(-1)[0])


class SileroVad(InProcessEngine):
    role = Role.VAD
    sample_rate = SAMPLE_RATE
    frame_samples = FRAME_SAMPLES

    def __init__(self, spec: EngineSpec) -> None:
        super().__init__(spec)
        self._session: Any = None
        self._run_lock = threading.Lock()

    def artifacts(self) -> list[ModelArtifact]:
        return []

    def _path(self) -> Path:
        return bundled_model_path() if self.spec.model == BUNDLED else Path(self.spec.model)

    def _model_paths(self) -> list[Path]:
        return [self._path()]

    def _load_model(self) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        options.log_severity_level = 4
        self._session = onnxruntime.InferenceSession(
            str(self._path()), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def _release_model(self) -> None:
        self._session = None

    park_refusal = "the Silero VAD (ONNX Runtime, 2 MB) has no parked state"

    def _is_loaded(self) -> bool:
        return self._session is not None

    def stream(self) -> SileroStream:
        self._require_loaded()
        return SileroStream(self._session, self._run_lock)
