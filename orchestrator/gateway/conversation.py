"""What the gateway learns of a Realtime conversation from the messages it relays (pure).

A session served by the bridge is carried to the host once the host is ready; the host must
then know what was said, and the move must never cut a turn. The gateway parses no audio and
holds no engine, so it reads the events both ways, in the beta and the GA names alike:

- the client's ``session.update`` messages, kept as sent (the host gets them again: voice,
  instructions, turn detection, the GA dialect);
- what was said, in order, one entry per item: a user message (typed, ``input_text``; or
  spoken, the transcript of its ``input_audio``, from ``conversation.item.created`` or, when
  that came without one, ``...input_audio_transcription.completed``), an assistant's reply from
  the transcript in ``response.done``. A reply the client truncates
  (``conversation.item.truncated``) keeps only the pieces of its transcript whose audio had
  been sent by ``audio_end_ms`` (the server's own rule; none left, the reply is dropped), so
  the host hears of what the student heard, not of what was cut;
- the client's audio the bridge holds uncommitted (``carry``): with push-to-talk every append
  since the last commit or clear, with server VAD the last ``TAIL_S`` of audio (speech the
  bridge may not have detected yet). It is sent to the host at the move, so none is lost;
- whether the conversation is at a **turn boundary**: no response in progress; no client
  request unanswered (an update, a commit, a clear, an item, a truncation, a response asked
  for or cancelled); no turn the server took (server VAD: from ``speech_started``, or a
  ``committed``, to the ``response.created`` that answers it: the reply cancelled by a barge-in
  does not end the turn that barged in); and no more uncommitted audio than can be carried.

A request is answered by its own answer event or by an ``error``: the error that names its
``event_id``, else the latest request still open (a refusal comes at once). An error when no
request is open ends a turn the server took once the speech stopped (its transcription failed).
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["user", "assistant"]
Heard = Literal["speaking", "stopped", "committed"]
KEPT_TURNS = 200
"""At most this many messages are carried (the host's history has its own token budget)."""
TAIL_S = 1.0
"""With server VAD, this much of the latest audio is carried: more than the bridge's VAD needs
to call speech (two 32 ms frames) and its pre-roll (0.3 s), with room for a busy CPU."""
CARRY_BYTES = 8 * 2**20
"""Push-to-talk audio beyond this, uncommitted, is not carried: the move waits for the commit."""
RATE = 24_000  # pcm16 mono, the Realtime audio format both ways
REPLIES_KEPT = 4  # replies whose transcript pieces are kept for a truncation
ANSWERS = {
    "session.update": "session.updated",
    "input_audio_buffer.commit": "input_audio_buffer.committed",
    "input_audio_buffer.clear": "input_audio_buffer.cleared",
    "conversation.item.create": "conversation.item.created",
    "conversation.item.truncate": "conversation.item.truncated",
    "response.create": "response.created",
    "response.cancel": "response.done",
}
BETA_NAMES = {  # the server's GA names, read as the beta ones
    "conversation.item.added": "conversation.item.created",
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
}


@dataclass(frozen=True)
class Said:
    role: Role
    text: str  # empty while a spoken item waits for its transcript
    item_id: str = ""


@dataclass
class _Reply:
    """A reply's transcript pieces as they streamed, each with the audio sent by its end."""

    pieces: list[tuple[str, int]] = field(default_factory=list)
    pending: str = ""
    audio_ms: int = 0
    cut_ms: int | None = None  # the client truncated it here

    def text(self, piece: str) -> None:
        if self.pending:
            self.pieces.append((self.pending, self.audio_ms))
        self.pending = piece

    def heard(self, audio_end_ms: int) -> str:
        closed = [*self.pieces, (self.pending, self.audio_ms)]
        return "".join(text for text, end_ms in closed if end_ms <= audio_end_ms).strip()


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


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _audio_ms(audio: Any) -> int:
    """How much PCM16 audio a base64 string holds, in ms, without decoding it."""
    if not isinstance(audio, str):
        return 0
    size = len(audio) * 3 // 4 - (len(audio) - len(audio.rstrip("=")))
    return size * 1000 // (2 * RATE)


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
    def __init__(self, *, carry_bytes: int = CARRY_BYTES) -> None:
        self.updates: list[str] = []  # the client's session.update messages, as sent
        self.said: deque[Said] = deque(maxlen=KEPT_TURNS)
        self.ga = False
        self.push_to_talk = False
        self.carry_bytes = carry_bytes
        self._open: list[tuple[str, str]] = []  # requests not answered: (answer, event_id)
        self._responding = 0
        self._heard: Heard | None = None
        self._carry: deque[tuple[str, int]] = deque()  # uncommitted appends: (message, ms)
        self._carry_size = 0
        self._carry_ms = 0
        self._overflow = False  # push-to-talk audio past carry_bytes was appended
        self._replies: dict[str, _Reply] = {}

    @property
    def at_boundary(self) -> bool:
        """Between turns: nothing asked, taken or said is in flight, and what the bridge holds
        of the client's audio can be carried."""
        return not (self._responding or self._heard or self._open or self._overflow)

    def carry(self) -> list[str]:
        """The client's appends the bridge holds uncommitted, for the host, in order."""
        return [message for message, _ms in self._carry]

    # -- the client ----------------------------------------------------------------------

    def from_client(self, raw: str | bytes) -> None:
        """A client message, seen as it is routed (before any answer can come)."""
        event = _event(raw)
        if event is None:
            return
        kind = event["type"]
        if kind == "session.update":
            self._update(raw, event)
        elif kind == "input_audio_buffer.append":
            assert isinstance(raw, str)  # _event parses text only
            self._append(raw, _audio_ms(event.get("audio")))
        elif kind in ("input_audio_buffer.commit", "input_audio_buffer.clear"):
            self._drop_carry()
        if kind != "input_audio_buffer.append":  # another kind is refused with an error
            self._open.append((ANSWERS.get(kind, "error"), _str(event.get("event_id"))))

    def _update(self, raw: str | bytes, event: dict[str, Any]) -> None:
        if isinstance(raw, str):
            self.updates.append(raw)
        session = event.get("session")
        if isinstance(session, dict):
            self.ga = self.ga or session.get("type") == "realtime"
            off = _turn_detection_off(session)
            if off is not None:
                self.push_to_talk = off
                self._trim()

    def _append(self, raw: str, ms: int) -> None:
        if self._overflow:
            return  # not carried anyway: the move waits for the commit or the clear
        self._carry.append((raw, ms))
        self._carry_size += len(raw)
        self._carry_ms += ms
        self._trim()

    def _trim(self) -> None:
        """Server VAD: only the latest TAIL_S is kept. Push-to-talk: all of it, up to
        ``carry_bytes``; past that none (the move then waits for the commit)."""
        if not self.push_to_talk:
            self._overflow = False
            while len(self._carry) > 1 and self._carry_ms - self._carry[0][1] >= TAIL_S * 1000:
                message, oldest_ms = self._carry.popleft()
                self._carry_size -= len(message)
                self._carry_ms -= oldest_ms
        elif self._carry_size > self.carry_bytes:
            self._drop_carry()
            self._overflow = True

    def _drop_carry(self) -> None:
        self._carry.clear()
        self._carry_size = self._carry_ms = 0
        self._overflow = False

    # -- the server ----------------------------------------------------------------------

    def from_server(self, raw: str | bytes) -> None:
        """A server message, seen before it is relayed to the client."""
        event = _event(raw)
        if event is None:
            return
        kind = BETA_NAMES.get(event["type"], event["type"])
        answered = kind != "error" and self._answer(kind)  # an error: see _error
        if kind == "conversation.item.created":
            self._item(event.get("item"))
        elif kind == "conversation.item.input_audio_transcription.completed":
            self._transcribed(_str(event.get("item_id")), _str(event.get("transcript")))
        elif kind == "input_audio_buffer.speech_started":
            self._heard = "speaking"  # a barge-in too: the reply it cancels does not end it
        elif kind == "input_audio_buffer.speech_stopped":
            self._heard = "stopped" if self._heard == "speaking" else self._heard
        elif kind == "input_audio_buffer.committed":
            if not answered:
                self._drop_carry()  # the server cut the turn itself: the bridge answers it
            if self._heard or not self.push_to_talk:
                self._heard = "committed"  # server VAD replies to what was committed
        elif kind == "response.created":
            self._responding += 1
            if self._heard == "committed":
                self._heard = None  # the reply answers the turn from here
        elif kind == "response.audio.delta":
            self._streamed(event).audio_ms += _audio_ms(event.get("delta"))
        elif kind == "response.audio_transcript.delta":
            self._streamed(event).text(_str(event.get("delta")))
        elif kind == "response.done":
            self._responding = max(0, self._responding - 1)
            self._reply(event.get("response"))
        elif kind == "conversation.item.truncated":
            self._truncated(_str(event.get("item_id")), event.get("audio_end_ms"))
        elif kind == "error":
            self._error(event.get("error"))

    def _answer(self, answer: str) -> bool:
        """The oldest open request this event answers is answered; False when none was."""
        for index, (waiting, _event_id) in enumerate(self._open):
            if waiting == answer:
                del self._open[index]
                return True
        return False

    def _error(self, error: Any) -> None:
        event_id = _str(error.get("event_id")) if isinstance(error, dict) else ""
        for index, (_waiting, open_id) in enumerate(self._open):
            if event_id and open_id == event_id:
                del self._open[index]
                return
        if self._open:
            self._open.pop()  # a refusal answers the request just sent
        elif self._heard in ("stopped", "committed"):
            self._heard = None  # the turn failed before a reply

    def _find(self, item_id: str) -> int | None:
        if not item_id:
            return None
        for index in range(len(self.said) - 1, -1, -1):
            if self.said[index].item_id == item_id:
                return index
        return None

    def _item(self, item: Any) -> None:
        if not isinstance(item, dict) or item.get("role") not in ("user", "assistant"):
            return
        role: Role = item["role"]
        item_id = _str(item.get("id"))
        parts = item.get("content")
        parts = parts if isinstance(parts, list) else []
        text = " ".join(t for t in map(_text, parts) if t)
        index = self._find(item_id)
        if index is not None:
            if text:
                self.said[index] = Said(role, text, item_id)
        elif text or (item_id and any(_is_audio(p) for p in parts)):
            self.said.append(Said(role, text, item_id))  # a transcript may follow
        if role == "assistant":
            self._cut(item_id)

    def _transcribed(self, item_id: str, transcript: str) -> None:
        index = self._find(item_id)
        if index is not None and transcript.strip() and not self.said[index].text:
            said = self.said[index]
            self.said[index] = Said(said.role, transcript.strip(), item_id)

    def _reply(self, response: Any) -> None:
        if not isinstance(response, dict):
            return
        output = response.get("output")
        for item in output if isinstance(output, list) else []:
            self._item(item)

    def _streamed(self, event: dict[str, Any]) -> _Reply:
        item_id = _str(event.get("item_id"))
        reply = self._replies.get(item_id)
        if reply is None:
            reply = self._replies[item_id] = _Reply()
            while len(self._replies) > REPLIES_KEPT:
                del self._replies[next(iter(self._replies))]
        return reply

    def _truncated(self, item_id: str, audio_end_ms: Any) -> None:
        reply = self._replies.get(item_id)
        if reply is None or not isinstance(audio_end_ms, int) or isinstance(audio_end_ms, bool):
            return  # no transcript pieces known: nothing to cut by
        reply.cut_ms = audio_end_ms
        self._cut(item_id)

    def _cut(self, item_id: str) -> None:
        """Apply a truncation once both the reply's item and the truncation are known."""
        reply = self._replies.get(item_id)
        index = self._find(item_id)
        if reply is None or reply.cut_ms is None or index is None:
            return
        heard = reply.heard(reply.cut_ms)
        if heard:
            self.said[index] = Said("assistant", heard, item_id)
        else:
            del self.said[index]

    # -- the host ------------------------------------------------------------------------

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
            if s.text
        ]
        return [*self.updates, *items]


def _is_audio(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") in ("input_audio", "audio", "output_audio")
