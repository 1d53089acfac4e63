"""Real speech for tests: espeak-ng speaks, PyAV decodes. Tests skip when espeak-ng is absent
(scripts/system-deps.sh installs it, and CI runs that)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import numpy.typing as npt
import pytest

from orchestrator.voice import audio


def speak(text: str, rate: int = 16_000) -> npt.NDArray[np.float32]:
    """``text`` spoken by espeak-ng, mono float32 at ``rate``, without leading or trailing
    silence (so a test knows exactly when the speech starts and ends)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/system-deps.sh installs it)")
    wav = subprocess.run(
        ["espeak-ng", "--stdout", "-v", "en-us", text], capture_output=True, check=True
    ).stdout
    samples = audio.decode(wav, rate)
    loud = np.flatnonzero(np.abs(samples) > 0.01)
    return samples[loud[0] : loud[-1] + 1]


def silence(seconds: float, rate: int = 16_000) -> npt.NDArray[np.float32]:
    return np.zeros(int(seconds * rate), dtype=np.float32)
