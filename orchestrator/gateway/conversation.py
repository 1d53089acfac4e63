"""What the gateway learns of a Realtime conversation from the messages it relays (pure).

A session served by the bridge is carried to the host once the host is ready; the host must
then know what was said, and the move must never cut a turn. The gateway parses no audio and
holds no engine, so it reads the events both ways:

- the client's ``session.update`` messages, kept as sent (the host gets them again: voice,
  instructions, turn detection, the GA dialect);
- what was said, in order: a user message (typed, ``input_text``; or spoken, the transcript
  of its ``input_audio``) from ``conversation.item.created``, an assistant's reply from the
  transcript in ``response.done``;
- whether the conversation is at a **turn boundary**: no response in progress, no client
  request still unanswered (a commit, a clear, an item, a response asked for), no speech the
  server heard start (its turn ends with the reply's ``response.done``) and, with push-to-talk,
  no audio appended since the last commit. A request counts as answered by its own answer
  event or by an ``error`` (an error answers one request; never below zero).

Not carried: a reply cut short by barge-in keeps its whole transcript here (the host's own
history keeps only what was heard), and audio itself (only its transcript moves).
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

Role = Literal["user", "assistant"]
KEPT_TURNS = 200
"""At most this many messages are carried (the host's history has its own token budget)."""
ANSWERS = {
    "input_audio_buffer.commit": "input_audio_buffer.committed",
    "input_audio_buffer.clear": "input_audio_buffer.cleared",
    "conversation.item.create": "conversation.item.created",
    "response.create": "response.created",
}


@dataclass(frozen=True)
class Said:
    role: Role
    text: str


def _event(raw: str | bytes) -> dict[str, Any] | None:
    if not isinstance(raw, str):
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("type"), str) else None


def _text(part: Any) -> str:
    if not isinstance(part, dict):
        return ""
    for key in ("text", "transcript"):
        value = part.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _turn_detection_off(session: dict[str, Any]) -> bool | None:
    """True for push-to-talk (``turn_detection: null``), False for server VAD, None when the
    update does not say (beta ``session.turn_detection``, GA ``session.audio.input...``)."""
    holder: Any = session
    if "turn_detection" not in holder:
        holder = (session.get("audio") or {}).get("input") or {}
        if not isinstance(holder, dict) or "turn_detection" not in holder:
            return None
    return holder["turn_detection"] is None


class Conversation:
    def __init__(self) -> None:
        self.updates: list[str] = []  # the client's session.update messages, as sent
        self.said: deque[Said] = deque(maxlen=KEPT_TURNS)
        self.ga = False
        self.push_to_talk = False
        self._waiting: dict[str, int] = dict.fromkeys(ANSWERS.values(), 0)
        self._responding = 0
        self._speaking = False
        self._uncommitted = False

    @property
    def at_boundary(self) -> bool:
        """Between turns: nothing asked, heard or said is in flight."""
        return not (
            self._responding or self._speaking or self._uncommitted or any(self._waiting.values())
        )

    def from_client(self, raw: str | bytes) -> None:
        """A client message, seen as it is routed (before any answer can come)."""
        event = _event(raw)
        if event is None:
            return
        kind = event["type"]
        if kind == "session.update" and isinstance(raw, str):
            self.updates.append(raw)
            session = event.get("session")
            if isinstance(session, dict):
                self.ga = self.ga or session.get("type") == "realtime"
                off = _turn_detection_off(session)
                if off is not None:
                    self.push_to_talk = off
        elif kind == "input_audio_buffer.append":
            self._uncommitted = self._uncommitted or self.push_to_talk
        elif kind in ("input_audio_buffer.commit", "input_audio_buffer.clear"):
            self._uncommitted = False
        if kind in ANSWERS:
            self._waiting[ANSWERS[kind]] += 1

    def from_server(self, raw: str | bytes) -> None:
        """A server message, seen before it is relayed to the client."""
        event = _event(raw)
        if event is None:
            return
        kind = event["type"]
        if self._waiting.get(kind):
            self._waiting[kind] -= 1
        if kind == "conversation.item.created":
            self._item(event.get("item"))
        elif kind == "input_audio_buffer.speech_started":
            self._speaking = True
        elif kind == "response.created":
            self._responding += 1
        elif kind == "response.done":
            self._responding = max(0, self._responding - 1)
            self._speaking = False
            self._reply(event.get("response"))
        elif kind == "error":
            self._speaking = False
            for answer, count in self._waiting.items():
                if count:
                    self._waiting[answer] = count - 1
                    break

    def _item(self, item: Any) -> None:
        if not isinstance(item, dict) or item.get("role") not in ("user", "assistant"):
            return
        text = " ".join(t for t in map(_text, item.get("content") or []) if t)
        if text:
            self.said.append(Said(item["role"], text))

    def _reply(self, response: Any) -> None:
        if not isinstance(response, dict):
            return
        for item in response.get("output") or []:
            self._item(item)

    def replay(self) -> list[str]:
        """What the host is sent to continue this conversation: the client's session updates,
        then each message as ``conversation.item.create`` (a user's as ``input_text``, an
        assistant's as text: its audio is not carried)."""
        said_kind = "output_text" if self.ga else "text"
        items = [
            json.dumps(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": s.role,
                        "content": [
                            {
                                "type": "input_text" if s.role == "user" else said_kind,
                                "text": s.text,
                            }
                        ],
                    },
                }
            )
            for s in self.said
        ]
        return [*self.updates, *items]
