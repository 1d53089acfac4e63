"""espeak-ng's voice set when it changes, not before every sentence: a workaround for a leak.

Piper (piper-tts 1.8) phonemizes each text with its bridge's ``set_voice(voice)`` and then
``get_phonemes(text)``. espeak-ng keeps about 1.4 KB each time ``espeak_SetVoiceByName`` runs
(glibc's count of bytes in use: +2.7 MB over 2,000 calls; ``get_phonemes`` alone keeps
nothing), so a server that speaks all day grows by it with every sentence (bench/soak.py).
``remember_voice`` wraps the bridge's ``set_voice`` so that espeak-ng is asked only for a voice
other than the one it has, and its ``initialize`` (which resets espeak-ng, voice included) so
that the next ``set_voice`` always reaches it. espeak-ng's voice is process-wide; so is this.
"""

from __future__ import annotations

import threading
from typing import Any

_MARK = "_voice_remembered"


def remember_voice(bridge: Any) -> None:
    """Wrap ``bridge.set_voice`` and ``bridge.initialize`` (``piper.espeakbridge``), once."""
    if getattr(bridge, _MARK, False):
        return
    set_voice, initialize = bridge.set_voice, bridge.initialize
    lock = threading.Lock()
    current: list[str] = []  # the voice espeak-ng has, once one was set

    def set_voice_if_new(voice: str) -> None:
        with lock:
            if current != [voice]:
                set_voice(voice)  # an unknown voice raises: nothing is remembered
                current[:] = [voice]

    def initialize_and_forget(data_dir: str) -> None:
        with lock:
            current.clear()
            initialize(data_dir)

    bridge.set_voice = set_voice_if_new
    bridge.initialize = initialize_and_forget
    setattr(bridge, _MARK, True)
