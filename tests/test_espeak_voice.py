"""espeak-ng's voice is set when it changes, not before every sentence Piper speaks.

espeak-ng keeps about 1.4 KB each time its voice is set, and Piper sets it before every text
(``services/espeak_voice.py``). A recording bridge shows what reaches espeak-ng; the tiny Piper
voice shows that speech is unchanged, and glibc's count of bytes in use that the leak is gone.
"""

from __future__ import annotations

import ctypes
import gc
from pathlib import Path
from types import SimpleNamespace

import pytest

from services.base import EngineSpec, Role
from services.espeak_voice import remember_voice
from services.piper_tts import PiperEngine


@pytest.fixture
def tts(tiny_piper_onnx: Path, tmp_path: Path) -> PiperEngine:
    return PiperEngine(EngineSpec("tts", Role.TTS, str(tiny_piper_onnx), tmp_path))


class Bridge(SimpleNamespace):
    """What espeak-ng is asked, in order."""

    def __init__(self) -> None:
        super().__init__(asked=[])
        self.set_voice = self._set_voice
        self.initialize = self._initialize

    def _set_voice(self, voice: str) -> None:
        if voice == "klingon":
            raise RuntimeError(f"Failed to set voice: {voice}")
        self.asked.append(voice)

    def _initialize(self, data_dir: str) -> None:
        self.asked.append(f"init {data_dir}")


def test_espeak_hears_only_a_change_of_voice() -> None:
    bridge = Bridge()
    remember_voice(bridge)
    remember_voice(bridge)  # once: not wrapped twice
    for voice in ["en-us", "en-us", "de", "de", "en-us"]:
        bridge.set_voice(voice)
    assert bridge.asked == ["en-us", "de", "en-us"]
    bridge.initialize("/data")  # espeak-ng starts over: the voice must be set again
    bridge.set_voice("en-us")
    assert bridge.asked[-2:] == ["init /data", "en-us"]
    with pytest.raises(RuntimeError):
        bridge.set_voice("klingon")
    bridge.set_voice("en-us")  # still the one espeak-ng has
    assert bridge.asked[-1] == "en-us" and bridge.asked.count("en-us") == 3


MALLINFO2 = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks")


def in_use() -> int:
    """glibc's bytes in use (``mallinfo2().uordblks``), after a collection."""

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (*MALLINFO2, "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    gc.collect()
    return int(libc.mallinfo2().uordblks)


async def test_piper_speaks_as_before_and_stops_leaking(tts: PiperEngine) -> None:
    await tts.load()
    voice = tts._voice
    first = voice.phonemize("Hello there, how are you today?")
    before = in_use()
    for _ in range(500):
        assert voice.phonemize("Hello there, how are you today?") == first
    assert in_use() - before < 200_000, "about 700 kB when every call set the voice"
    chunks = [c async for c in tts.synthesize("Hello there. How are you today?")]
    assert len(chunks) == 2
    await tts.unload()
    await tts.load()  # a new voice initialises espeak-ng again: it is set again
    assert tts._voice.phonemize("Hello there, how are you today?") == first
    await tts.unload()
