"""``Conversation`` on its own: the turn boundary, the history and the carried audio, read from
the events a Realtime session sends both ways.

The server's events are built by the orchestrator's own renderer (``render``, the cascade
session's events as Realtime events) and event helpers, in the order the cascade sends them,
so the gateway is tested on what the bridge really says; GA sessions get them renamed by the
server's own ``ga_named``.
"""

from __future__ import annotations

import base64
import json
from typing import Any, cast

import pytest

from orchestrator.api.realtime.render import render, user_item
from orchestrator.api.realtime.wire import error_event, ga_named, server_event
from orchestrator.gateway.conversation import TAIL_S, Conversation
from orchestrator.gateway.handover import Handover
from orchestrator.voice.boundary import SessionEvent

TUTOR = "You are a patient maths tutor."


def pcm(ms: int) -> bytes:
    return bytes(48 * ms)  # PCM16 mono at 24 kHz: 48 bytes a millisecond


class Talk:
    """A conversation read as the gateway reads it; the client and the bridge speak in turn."""

    def __init__(self, *, ga: bool = False, carry_bytes: int = 1 << 20) -> None:
        self.c = Conversation(carry_bytes=carry_bytes)
        self.ga = ga
        self.sent: list[str] = []

    def client(self, type_: str, **fields: Any) -> str:
        raw = json.dumps({"type": type_, **fields})
        self.c.from_client(raw)
        self.sent.append(raw)
        return raw

    def append(self, ms: int) -> str:
        return self.client("input_audio_buffer.append", audio=base64.b64encode(pcm(ms)).decode())

    def server(self, *events: dict[str, Any]) -> None:
        for event in events:
            self.c.from_server(json.dumps(ga_named(event) if self.ga else event))

    def session(self, kind: str, **fields: Any) -> None:
        """One event of the cascade session, as the server renders it."""
        self.server(*render(SessionEvent(kind, **fields)))

    def heard(self, text: str, item_id: str) -> None:
        """A turn the server's VAD found: its start, its end, its transcript."""
        self.session("speech_started", at_ms=1000)
        assert not self.c.at_boundary
        self.session("speech_stopped", at_ms=2000)
        assert not self.c.at_boundary
        self.session("transcript", item_id=item_id, text=text)

    def reply(
        self, *sentences: str, item_id: str, status: str = "completed", ms: int = 1000
    ) -> None:
        """A whole reply, one sentence and ``ms`` of its audio at a time; never a boundary
        before its ``response.done``."""
        ids = {"item_id": item_id, "response_id": f"resp_{item_id}"}
        self.session("reply_started", **ids)
        for sentence in sentences:
            assert not self.c.at_boundary
            self.session("reply_text", text=sentence + " ", **ids)
            assert not self.c.at_boundary
            self.session("reply_audio", audio=pcm(ms), **ids)
        assert not self.c.at_boundary
        self.session("reply_done", status=status, text=" ".join(sentences), **ids)

    def said(self) -> list[tuple[str, str]]:
        return [(s.role, s.text) for s in self.c.said if s.text]

    def items(self) -> list[dict[str, Any]]:
        """The conversation replayed to the host, after the updates."""
        sent = [json.loads(raw) for raw in self.c.replay()]
        return [e["item"] for e in sent if e["type"] == "conversation.item.create"]


def test_a_server_vad_turn_is_a_boundary_only_after_its_reply() -> None:
    talk = Talk()
    assert talk.c.at_boundary and not talk.c.push_to_talk  # server VAD until told otherwise
    talk.append(500)
    talk.heard("What is a third of nine?", "item_u1")
    assert not talk.c.at_boundary  # transcribed; the reply has not started
    talk.reply("Three.", "A third is one of three parts.", item_id="item_a1")
    assert talk.c.at_boundary
    assert talk.said() == [
        ("user", "What is a third of nine?"),
        ("assistant", "Three. A third is one of three parts."),
    ]
    assert talk.c.carry() == []  # the turn's audio was the bridge's to answer


def test_a_barge_in_is_not_a_boundary_when_its_cancelled_reply_ends() -> None:
    """The server hears speech over its reply, cancels the reply, and the user still speaks:
    the ``response.done`` of the cancelled reply comes after ``speech_started``."""
    talk = Talk()
    talk.heard("Tell me about triangles.", "item_u1")
    ids = {"item_id": "item_a1", "response_id": "resp_1"}
    talk.session("reply_started", **ids)
    talk.session("reply_text", text="A triangle has three sides. ", **ids)
    talk.session("reply_audio", audio=pcm(800), **ids)
    talk.session("speech_started", at_ms=5000)  # the barge-in
    talk.session("reply_done", status="cancelled", text="A triangle has three sides.", **ids)
    assert not talk.c.at_boundary  # the user is speaking over it
    talk.session("speech_stopped", at_ms=6000)
    talk.session("transcript", item_id="item_u2", text="Wait, what about squares?")
    assert not talk.c.at_boundary
    talk.reply("A square has four.", item_id="item_a2")
    assert talk.c.at_boundary
    assert talk.said() == [
        ("user", "Tell me about triangles."),
        ("assistant", "A triangle has three sides."),
        ("user", "Wait, what about squares?"),
        ("assistant", "A square has four."),
    ]


def test_push_to_talk_commit_and_response_create() -> None:
    talk = Talk()
    talk.client("session.update", session={"turn_detection": None})
    assert talk.c.push_to_talk and not talk.c.at_boundary  # the update is not answered yet
    talk.server(server_event("session.updated", session={"turn_detection": None}))
    assert talk.c.at_boundary
    talk.append(300)
    talk.append(300)
    talk.client("input_audio_buffer.commit")
    talk.client("response.create")
    assert not talk.c.at_boundary
    ids = {"item_id": "item_a1", "response_id": "resp_1"}
    talk.session("reply_started", **ids)  # at once: the reply waits for the transcript
    assert not talk.c.at_boundary
    talk.session("transcript", item_id="item_u1", text="Is zero even?")
    talk.session("reply_text", text="Yes. ", **ids)
    talk.session("reply_audio", audio=pcm(600), **ids)
    assert not talk.c.at_boundary
    talk.session("reply_done", status="completed", text="Yes.", **ids)
    assert talk.c.at_boundary
    assert talk.said() == [("user", "Is zero even?"), ("assistant", "Yes.")]
    assert talk.c.carry() == []


def test_push_to_talk_audio_never_committed_is_carried_not_waited_for() -> None:
    """Audio appended and not committed (a student still holding the button, or a client that
    never commits it) is what the bridge holds for the next commit: it moves with the session
    instead of holding the move forever."""
    talk = Talk(carry_bytes=4000)
    talk.client("session.update", session={"turn_detection": None})
    talk.server(server_event("session.updated", session={}))
    first, second = talk.append(20), talk.append(20)
    assert talk.c.at_boundary
    assert talk.c.carry() == [first, second]
    talk.append(40)  # over carry_bytes: too much to carry, so the move waits for the commit
    assert not talk.c.at_boundary and talk.c.carry() == []
    talk.client("input_audio_buffer.clear")
    talk.server(server_event("input_audio_buffer.cleared"))
    assert talk.c.at_boundary and talk.c.carry() == []
    talk.append(30)
    talk.client("input_audio_buffer.commit")
    assert talk.c.carry() == []  # committed: the bridge transcribes and keeps it
    fourth = talk.append(20)  # the next turn, sent before the commit is answered
    talk.session("transcript", item_id="item_u1", text="Hello.")
    assert talk.c.carry() == [fourth]


def test_push_to_talk_turn_the_server_cut_at_its_limit_drops_the_carry() -> None:
    """A push-to-talk turn longer than the server's ``max_utterance_s`` is committed by the
    server itself: that audio is the bridge's turn now."""
    talk = Talk()
    talk.client("session.update", session={"turn_detection": None})
    talk.server(server_event("session.updated", session={}))
    talk.append(500)
    talk.session("transcript", item_id="item_u1", text="A very long question.")
    assert talk.c.carry() == [] and talk.c.at_boundary  # push-to-talk: no reply unasked


def test_server_vad_carries_the_latest_second_of_audio() -> None:
    """Speech the bridge's VAD has not called yet when the move begins must reach the host."""
    talk = Talk()
    sent = [talk.append(200) for _ in range(10)]
    assert talk.c.at_boundary
    assert talk.c.carry() == sent[-round(TAIL_S * 1000 / 200) :]
    talk.heard("Hi.", "item_u1")
    assert talk.c.carry() == []  # committed by the server: the bridge answers it


def test_a_reply_cancelled_by_the_client_ends_at_its_response_done() -> None:
    talk = Talk()
    talk.client("session.update", session={"turn_detection": None, "instructions": TUTOR})
    talk.server(server_event("session.updated", session={}))
    talk.client("conversation.item.create", item=_typed("user", "Count to ten."))
    talk.server(_created(user_item("item_u1", {"type": "input_text", "text": "Count to ten."})))
    talk.client("response.create")
    ids = {"item_id": "item_a1", "response_id": "resp_1"}
    talk.session("reply_started", **ids)
    talk.session("reply_text", text="One, two, three. ", **ids)
    talk.session("reply_audio", audio=pcm(1500), **ids)
    talk.client("response.cancel")
    assert not talk.c.at_boundary
    talk.session("reply_done", status="cancelled", text="One, two, three.", **ids)
    assert talk.c.at_boundary
    assert talk.said() == [("user", "Count to ten."), ("assistant", "One, two, three.")]


def test_a_cancel_with_no_reply_is_answered_by_its_error() -> None:
    talk = Talk()
    talk.client("response.cancel")
    assert not talk.c.at_boundary
    talk.server(error_event("no active response found", "response_cancel_not_active"))
    assert talk.c.at_boundary


def test_a_truncated_reply_keeps_only_what_the_client_played() -> None:
    talk = Talk()
    talk.heard("Tell me three facts.", "item_u1")
    talk.reply("One.", "Two.", "Three.", item_id="item_a1", ms=1000)
    talk.client("conversation.item.truncate", item_id="item_a1", content_index=0, audio_end_ms=2200)
    assert not talk.c.at_boundary
    talk.server(
        server_event(
            "conversation.item.truncated", item_id="item_a1", content_index=0, audio_end_ms=2200
        )
    )
    assert talk.c.at_boundary
    assert talk.said()[-1] == ("assistant", "One. Two.")  # the third was not heard
    assert talk.items()[-1]["content"][0]["text"] == "One. Two."


def test_a_reply_truncated_before_any_sentence_ended_is_dropped() -> None:
    talk = Talk()
    talk.heard("Tell me a fact.", "item_u1")
    talk.reply("Water boils at one hundred degrees.", item_id="item_a1", ms=2000)
    talk.server(
        server_event(
            "conversation.item.truncated", item_id="item_a1", content_index=0, audio_end_ms=900
        )
    )
    assert talk.said() == [("user", "Tell me a fact.")]


def test_a_truncation_before_the_reply_ends_applies_when_it_ends() -> None:
    talk = Talk()
    ids = {"item_id": "item_a1", "response_id": "resp_1"}
    talk.client("response.create")
    talk.session("reply_started", **ids)
    talk.session("reply_text", text="First. ", **ids)
    talk.session("reply_audio", audio=pcm(1000), **ids)
    talk.session("reply_text", text="Second. ", **ids)
    talk.server(
        server_event(
            "conversation.item.truncated", item_id="item_a1", content_index=0, audio_end_ms=1000
        )
    )
    talk.session("reply_audio", audio=pcm(1000), **ids)
    talk.session("reply_done", status="cancelled", text="First. Second.", **ids)
    assert talk.said() == [("assistant", "First.")]


def test_session_updates_are_replayed_first_as_sent() -> None:
    talk = Talk()
    first = talk.client("session.update", session={"instructions": "Be brief."})
    talk.server(server_event("session.updated", session={}))
    second = talk.client("session.update", session={"instructions": TUTOR, "voice": "alloy"})
    assert not talk.c.at_boundary  # the client waits for its session.updated
    talk.server(server_event("session.updated", session={}))
    assert talk.c.at_boundary
    talk.client("conversation.item.create", item=_typed("user", "Hello."))
    talk.server(_created(user_item("item_u1", {"type": "input_text", "text": "Hello."})))
    assert talk.c.replay()[:2] == [first, second]
    assert [i["content"][0] for i in talk.items()] == [{"type": "input_text", "text": "Hello."}]


def test_a_refused_update_is_answered_by_its_error() -> None:
    talk = Talk()
    talk.client("session.update", session={"voice": 7}, event_id="evt_client_1")
    talk.client("conversation.item.create", item=_typed("user", "Hi."))
    error = error_event("bad voice", "invalid_value", "evt_client_1")
    talk.server(error)  # names the update: the item is still open
    assert not talk.c.at_boundary
    talk.server(_created(user_item("item_u1", {"type": "input_text", "text": "Hi."})))
    assert talk.c.at_boundary


def test_an_error_with_no_request_open_ends_a_turn_whose_transcription_failed() -> None:
    talk = Talk()
    talk.session("speech_started", at_ms=0)
    talk.server(error_event("an unrelated refusal", "invalid_event"))
    assert not talk.c.at_boundary  # still speaking: that error was not about the turn
    talk.session("speech_stopped", at_ms=900)
    talk.server(error_event("the ASR engine failed", "engine_failed", status=503))
    assert talk.c.at_boundary


def test_a_client_event_the_bridge_does_not_know_is_answered_by_its_error() -> None:
    talk = Talk()
    talk.client("conversation.item.delete", item_id="item_u1")
    assert not talk.c.at_boundary
    talk.server(error_event("unknown event type", "unknown_event"))
    assert talk.c.at_boundary


def test_a_ga_session_reads_the_ga_names() -> None:
    """A GA client gets ``conversation.item.added`` and ``response.output_audio...``."""
    talk = Talk(ga=True)
    talk.client("session.update", session={"type": "realtime", "instructions": TUTOR})
    talk.server(server_event("session.updated", session={}))
    talk.client("conversation.item.create", item=_typed("user", "Hi."))
    talk.server(_created(user_item("item_u1", {"type": "input_text", "text": "Hi."})))
    assert talk.c.at_boundary  # the item.added answered the item.create
    talk.client("response.create")
    talk.reply("Hello there.", "How are you?", item_id="item_a1", ms=500)
    talk.server(
        server_event(
            "conversation.item.truncated", item_id="item_a1", content_index=0, audio_end_ms=600
        )
    )
    assert talk.c.at_boundary
    assert talk.said() == [("user", "Hi."), ("assistant", "Hello there.")]
    assert talk.items()[-1]["content"][0] == {"type": "output_text", "text": "Hello there."}


def test_a_spoken_item_whose_transcript_comes_later_keeps_its_place() -> None:
    """OpenAI's own server adds the user's audio item first and transcribes it after; the
    bridge sends the transcript in the item. Both keep the conversation's order."""
    talk = Talk()
    talk.server(_created(user_item("item_u1", {"type": "input_audio", "transcript": None})))
    talk.server(_created(user_item("item_u2", {"type": "input_text", "text": "Second."})))
    talk.server(
        server_event(
            "conversation.item.input_audio_transcription.completed",
            item_id="item_u1",
            content_index=0,
            transcript="First.",
        )
    )
    talk.session("transcript", item_id="item_u3", text="Third.")  # its completed repeats it
    assert talk.said() == [("user", "First."), ("user", "Second."), ("user", "Third.")]


@pytest.mark.parametrize("junk", ["", "[]", '{"type": 3}', "not json", '{"no": "type"}'])
def test_junk_is_ignored(junk: str) -> None:
    talk = Talk()
    talk.c.from_client(junk)
    talk.c.from_server(junk)
    talk.c.from_client(junk.encode())
    assert talk.c.at_boundary and talk.said() == []


def _typed(role: str, text: str) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": [{"type": "input_text", "text": text}]}


def _created(item: dict[str, Any]) -> dict[str, Any]:
    return server_event("conversation.item.created", previous_item_id=None, item=item)


class Held:
    """The passage as the hand-over sees it, reduced to what ``check`` calls."""

    def __init__(self) -> None:
        self.held = 0

    def hold_messages(self) -> None:
        self.held += 1


async def test_the_move_begins_only_at_a_boundary_never_mid_reply() -> None:
    passage = Held()
    handover = Handover(cast(Any, passage), "http://bridge")
    talk = Talk()
    talk.c = handover.conversation
    talk.client("session.update", session={"turn_detection": None})
    talk.server(server_event("session.updated", session={}))
    talk.client("response.create")
    ids = {"item_id": "item_a1", "response_id": "resp_1"}
    talk.session("reply_started", **ids)
    handover.host = cast(Any, object())  # the host's session is open: only the turn holds it
    for event in render(SessionEvent("reply_text", text="Half a reply. ", **ids)):
        talk.server(event)
        handover.check()
    audio = talk.append(100)  # the student starts the next turn while the reply plays
    handover.check()
    assert passage.held == 0
    talk.session("reply_done", status="completed", text="Half a reply.", **ids)
    handover.check()
    assert passage.held == 1 and handover.boundary_at is not None
    assert handover.carried == [audio]  # sent to the host before what comes next
    handover.check()
    assert passage.held == 1  # once
