"""Turn detection: speech probabilities per frame in, "user started / stopped speaking" out.

Pure logic over frame times (no clock). Speech starts after ``start_frames`` frames above
``threshold`` (a short guard against clicks, and still well inside the 100 ms barge-in bound);
it stops after ``end_silence_s`` of frames below ``threshold - hysteresis``. The stop event
carries the time the speech really ended (the first silent frame), which is what latency is
measured from.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class TurnEvent(StrEnum):
    SPEECH_STARTED = "speech_started"
    SPEECH_STOPPED = "speech_stopped"


@dataclass(frozen=True)
class Turn:
    event: TurnEvent
    at: float  # seconds into the stream


@dataclass(frozen=True)
class TurnSettings:
    threshold: float = 0.5
    hysteresis: float = 0.15
    start_frames: int = 2
    end_silence_s: float = 0.4
    frame_s: float = 0.032


class TurnDetector:
    def __init__(self, settings: TurnSettings = TurnSettings()) -> None:
        self.settings = settings
        self.speaking = False
        self._voiced_run = 0
        self._first_voiced_at = 0.0
        self._silence_since: float | None = None

    @property
    def pausing(self) -> bool:
        """Speaking, but the latest frames were silent: the turn may be about to end."""
        return self.speaking and self._silence_since is not None

    def feed(self, probability: float, frame_start: float) -> Turn | None:
        """One frame's speech probability; returns the turn event it completes, if any."""
        s = self.settings
        if not self.speaking:
            if probability >= s.threshold:
                if self._voiced_run == 0:
                    self._first_voiced_at = frame_start
                self._voiced_run += 1
                if self._voiced_run >= s.start_frames:
                    self.speaking = True
                    self._silence_since = None
                    return Turn(TurnEvent.SPEECH_STARTED, self._first_voiced_at)
            else:
                self._voiced_run = 0
            return None
        if probability >= s.threshold - s.hysteresis:
            self._silence_since = None
            return None
        if self._silence_since is None:
            self._silence_since = frame_start
        if frame_start + s.frame_s - self._silence_since >= s.end_silence_s:
            self.speaking = False
            self._voiced_run = 0
            ended, self._silence_since = self._silence_since, None
            return Turn(TurnEvent.SPEECH_STOPPED, ended)
        return None
