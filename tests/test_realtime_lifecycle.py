"""``/v1/realtime``: every response ends once, and push-to-talk works as OpenAI's does.

The invariant: each ``response.created`` is followed by exactly one ``response.done`` for the
same response (completed, cancelled, incomplete or failed) before the next ``response.created``,
whatever the client sends and whenever. A ``response.create`` while a response runs is refused
with OpenAI's ``conversation_already_has_active_response`` (what OpenAI answers), so a burst of
creates gets one response and errors for the rest.

With ``turn_detection: null`` nothing but ``response.create`` starts a reply: a commit answers
``input_audio_buffer.committed`` and the transcript, and no speech events are sent.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestServer

from orchestrator.api.app import create_api_app
from orchestrator.app.runtime import Runtime
from orchestrator.config import AppConfig
from tests.conftest import RuntimeFactory
from tests.realtime_client import Socket, connect
from tests.speech import silence, speak

RATE = 24_000
ENDINGS = {"completed", "cancelled", "incomplete", "failed"}


def lifecycle_errors(seen: list[dict[str, Any]]) -> list[str]:
    """What breaks the invariant in a stream of server events (empty: it holds); a response
    still open at the end is not an error here (``all_finished`` says whether any is)."""
    problems, open_id = [], None
    for e in seen:
        if e["type"] == "response.created":
            if open_id is not None:
                problems.append(f"{e['response']['id']} created while {open_id} was open")
            open_id = e["response"]["id"]
        elif e["type"] == "response.done":
            rid, status = e["response"]["id"], e["response"]["status"]
            if rid != open_id:
                problems.append(f"done for {rid}, but the open response is {open_id}")
            if status not in ENDINGS:
                problems.append(f"{rid} done with status {status}")
            open_id = None
    return problems


def all_finished(seen: list[dict[str, Any]]) -> bool:
    kinds = [e["type"] for e in seen if e["type"] in ("response.created", "response.done")]
    return kinds.count("response.created") == kinds.count("response.done")


def pcm(samples: np.ndarray) -> str:
    return base64.b64encode((np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes()).decode()


def spoken(text: str) -> list[str]:
    """``text`` spoken and a second of silence, in 500 ms appends."""
    samples = np.concatenate([speak(text, RATE), silence(1.0, RATE)])
    step = RATE // 2
    return [pcm(samples[i : i + step]) for i in range(0, len(samples), step)]


async def next_event(socket: Socket, timeout: float = 60) -> dict[str, Any]:
    """The next server event, errors included (``Socket.until`` raises on those)."""
    message = await socket.ws.receive(timeout)
    assert message.type is aiohttp.WSMsgType.TEXT, message
    event: dict[str, Any] = json.loads(message.data)
    socket.seen.append(event)
    return event


async def sync(socket: Socket, marker: str) -> None:
    """Every event sent before this one was handled (the server takes them in order)."""
    await socket.send("session.update", session={"instructions": marker})
    while True:
        event = await next_event(socket)
        if event["type"] == "session.updated" and event["session"]["instructions"] == marker:
            return


async def until_all_finished(socket: Socket) -> None:
    while not all_finished(socket.seen):
        await next_event(socket)


@pytest.fixture
async def runtime(cascade_config: AppConfig, make_runtime: RuntimeFactory) -> Runtime:
    # short replies: these tests are about when responses end, not what they say
    short = cascade_config.sessions.model_copy(
        update={"llm_options": {"max_new_tokens": 8, "min_new_tokens": 4}}
    )
    return make_runtime(cascade_config.model_copy(update={"sessions": short}), writer=True)


@pytest.fixture
async def server(runtime: Runtime, aiohttp_server: Any) -> TestServer:
    served: TestServer = await aiohttp_server(create_api_app(runtime))
    return served


async def opened(server: TestServer, http: aiohttp.ClientSession) -> Socket:
    socket = await connect(server, http)
    await socket.until("session.created")
    return socket


async def test_a_cancel_right_after_create_still_ends_the_response(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        socket = await opened(server, http)
        await socket.say("Hello")
        await socket.send("response.create")
        await socket.send("response.cancel")  # before the reply's task has run
        created = await socket.until("response.created")
        done = await socket.until("response.done")
        assert done["response"]["id"] == created["response"]["id"]
        assert done["response"]["status"] == "cancelled"
        await socket.send("response.create")  # and the session answers the next one
        await until_all_finished(socket)
        assert lifecycle_errors(socket.seen) == []
        await socket.ws.close()


async def test_a_second_create_while_one_runs_is_refused_as_openai_does(
    server: TestServer,
) -> None:
    async with aiohttp.ClientSession() as http:
        socket = await opened(server, http)
        await socket.say("Hello")
        await socket.send("response.create")
        await socket.send("response.create")
        created = await socket.until("response.created")
        error = (await socket.until("error"))["error"]
        assert error["code"] == "conversation_already_has_active_response"
        assert created["response"]["id"] in error["message"]
        done = await socket.until("response.done")
        assert done["response"]["id"] == created["response"]["id"]
        assert done["response"]["status"] == "completed"
        assert socket.types().count("response.created") == 1
        assert lifecycle_errors(socket.seen) == []
        await socket.ws.close()


async def test_a_burst_of_creates_gets_one_done_per_created(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        socket = await opened(server, http)
        await socket.say("Hello")
        for _ in range(1000):
            await socket.send("response.create")
        await sync(socket, "after the burst")
        await until_all_finished(socket)
        created = socket.types().count("response.created")
        refused = [
            e for e in socket.seen if e["type"] == "error" and e["error"]["code"] != "invalid_type"
        ]
        assert created >= 1 and created + len(refused) == 1000
        assert {e["error"]["code"] for e in refused} <= {"conversation_already_has_active_response"}
        assert lifecycle_errors(socket.seen) == []
        await sync(socket, "still here")
        await socket.ws.close()


async def test_push_to_talk_replies_only_when_asked(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        socket = await opened(server, http)
        await socket.send("session.update", session={"turn_detection": None})
        assert (await socket.until("session.updated"))["session"]["turn_detection"] is None
        for chunk in spoken("Hello teacher, what is two plus two?"):
            await socket.send("input_audio_buffer.append", audio=chunk)
        await socket.send("input_audio_buffer.commit")
        committed = await socket.until("input_audio_buffer.committed")
        item = await socket.until("conversation.item.created")
        assert item["item"]["id"] == committed["item_id"]
        await socket.until("conversation.item.input_audio_transcription.completed")
        await sync(socket, "committed")
        await socket.send("response.create")
        created = await socket.until("response.created")
        done = await socket.until("response.done")
        assert done["response"]["id"] == created["response"]["id"]
        assert done["response"]["status"] == "completed"  # the client's own response speaks
        assert "response.audio.delta" in socket.types()
        assert socket.types().count("response.created") == 1
        vad_events = {"input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped"}
        assert not vad_events & set(socket.types())
        await socket.ws.close()


async def test_push_to_talk_create_right_after_commit_answers_the_turn(
    server: TestServer, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client does not wait for the transcript: the reply waits for it, so the LLM is
    asked with the user's words in the history."""
    llm = runtime.fleet.engine("llm")
    chat, asked = llm.chat, []

    def recording_chat(messages: list[dict[str, str]], **options: Any) -> Any:
        asked.append([dict(m) for m in messages])
        return chat(messages, **options)

    monkeypatch.setattr(llm, "chat", recording_chat)
    async with aiohttp.ClientSession() as http:
        socket = await opened(server, http)
        await socket.send("session.update", session={"turn_detection": None})
        await socket.until("session.updated")
        for chunk in spoken("Good morning."):
            await socket.send("input_audio_buffer.append", audio=chunk)
        await socket.send("input_audio_buffer.commit")
        await socket.send("response.create")
        done = await socket.until("response.done")
        assert done["response"]["status"] == "completed"
        kinds = socket.types()
        transcript = socket.seen[
            kinds.index("conversation.item.input_audio_transcription.completed")
        ]["transcript"]
        ((*_before, last),) = asked  # one LLM call, and the user's words were its last message
        assert last == {"role": "user", "content": transcript}
        assert kinds.count("response.created") == 1
        assert "input_audio_buffer.speech_stopped" not in kinds
        await socket.ws.close()


async def test_an_empty_commit_is_openai_s_error_and_the_session_goes_on(
    server: TestServer,
) -> None:
    async with aiohttp.ClientSession() as http:
        socket = await opened(server, http)
        await socket.send("session.update", session={"turn_detection": None})
        await socket.until("session.updated")
        await socket.send("input_audio_buffer.commit")
        error = (await socket.until("error"))["error"]
        assert error["code"] == "input_audio_buffer_commit_empty"
        await socket.send("input_audio_buffer.append", audio=pcm(silence(0.05, RATE)))
        await socket.send("input_audio_buffer.commit")  # 50 ms: still too little
        assert (await socket.until("error"))["error"]["code"] == "input_audio_buffer_commit_empty"
        assert "input_audio_buffer.speech_stopped" not in socket.types()
        await sync(socket, "alive")
        await socket.ws.close()


async def test_server_vad_still_answers_by_itself(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        socket = await opened(server, http)
        for chunk in spoken("Hello teacher, what is two plus two?"):
            await socket.send("input_audio_buffer.append", audio=chunk)
        await socket.until("input_audio_buffer.speech_stopped")
        await socket.until("input_audio_buffer.committed")
        await socket.until("response.created")
        await socket.until("response.done")
        assert lifecycle_errors(socket.seen) == []
        await socket.ws.close()
