"""Random Realtime conversations against the real app on the tiny engines (hypothesis).

A ``RuleBasedStateMachine`` plays a client that appends speech, silence and crumbs of audio,
commits, clears, creates, cancels and truncates responses, switches server VAD on and off, and
sends garbage, in any order and without waiting for answers. After every step the socket must
be open and the responses in order (each ``response.created`` closed by one ``response.done``
before the next); at the end of each example the client stops the turns, and every response
created must have been finished exactly once.

The machine runs in a worker thread; each step hands its coroutine to the test's event loop
(where the server and the client socket live) and waits for it. Nothing sleeps: the reader
wakes whoever waits on a new event, and the end of an example waits on the session's own
turn tasks. Bounded for CI (see ``BOUNDS``).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import aiohttp
import numpy as np
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from orchestrator.api.app import create_api_app
from orchestrator.app.runtime import Runtime
from orchestrator.config import AppConfig
from tests.conftest import API_KEY, RuntimeFactory
from tests.speech import silence
from tests.test_realtime_bad_input import CASES
from tests.test_realtime_lifecycle import RATE, all_finished, lifecycle_errors, pcm, spoken

T = TypeVar("T")
BOUNDS = settings(
    max_examples=50,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TYPES = [
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.truncate",
    "response.create",
    "response.cancel",
]
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=6,
)
random_event = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES)},
    optional={
        key: json_value
        for key in ("session", "item", "audio", "response", "item_id", "audio_end_ms")
    },
).map(json.dumps)
garbage = st.one_of(
    st.sampled_from([raw for raw, _code, _param in CASES if len(raw) < 10_000]),
    random_event,
    st.text(max_size=30),
)


class Client:
    """One socket; a reader task keeps every server event and wakes whoever waits."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []
        self.closed: str | None = None  # why the socket ended, once it did
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                self.seen.append(json.loads(message.data))
            self._changed.set()
        self.closed = f"closed with {self.ws.close_code}"
        self._changed.set()

    async def until(self, done: Callable[[], bool], timeout: float = 60) -> None:
        async with asyncio.timeout(timeout):
            while True:
                self._changed.clear()
                if done() or self.closed:
                    return
                await self._changed.wait()

    async def send(self, type_: str, **fields: Any) -> None:
        await self.ws.send_str(json.dumps({"type": type_, **fields}))

    async def sync(self) -> None:
        """Every event sent before this one was handled (the server takes them in order)."""
        marker = f"sync {uuid.uuid4().hex}"
        await self.send("session.update", session={"instructions": marker})

        def answered() -> bool:
            return any(
                e["type"] == "session.updated" and e["session"]["instructions"] == marker
                for e in self.seen
            )

        await self.until(answered)
        assert self.closed is None, self.closed

    def last_item(self) -> str | None:
        items = [e["response"]["id"] for e in self.seen if e["type"] == "response.done"]
        outputs = [
            e["response"]["output"][0]["id"]
            for e in self.seen
            if e["type"] == "response.done" and e["response"]["output"]
        ]
        return outputs[-1] if outputs else (items[-1] if items else None)

    async def finish(self, runtime: Runtime) -> None:
        """Stop the turns, end the reply that runs, then check that every response ended."""
        await self.send("session.update", session={"turn_detection": None})
        await self.sync()
        created = next(e for e in self.seen if e["type"] == "session.created")
        session = runtime.sessions[created["session"]["id"]]
        turns = session.listener.pending_turns()
        if turns:  # a turn heard by server VAD may still start a reply
            await asyncio.wait(turns)
        await self.send("response.cancel")
        await self.sync()
        await self.until(lambda: all_finished(self.seen))
        assert lifecycle_errors(self.seen) == []
        assert all_finished(self.seen), "a response.created has no response.done"
        await self.ws.close()
        await self._reader


async def test_random_conversations_keep_every_response_whole(
    cascade_config: AppConfig, make_runtime: RuntimeFactory, aiohttp_server: Any
) -> None:
    sessions = cascade_config.sessions.model_copy(
        update={"llm_options": {"max_new_tokens": 8, "min_new_tokens": 4}, "max_per_key": 50}
    )
    runtime = make_runtime(cascade_config.model_copy(update={"sessions": sessions}), writer=True)
    server: TestServer = await aiohttp_server(create_api_app(runtime))
    loop = asyncio.get_running_loop()
    speech = spoken("Hello there.")
    audio = {"speech": speech, "silence": [pcm(silence(0.3, RATE))], "crumb": [pcm(np.zeros(7))]}

    async with aiohttp.ClientSession() as http:

        def call(coro: Coroutine[Any, Any, T]) -> T:
            return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=180)

        async def dial() -> Client:
            ws = await http.ws_connect(
                f"http://{server.host}:{server.port}/v1/realtime",
                headers={"Authorization": f"Bearer {API_KEY}"},
            )
            client = Client(ws)
            await client.until(lambda: any(e["type"] == "session.created" for e in client.seen))
            return client

        class Conversation(RuleBasedStateMachine):
            def __init__(self) -> None:
                super().__init__()
                self.client = call(dial())

            def send(self, type_: str, **fields: Any) -> None:
                call(self.client.send(type_, **fields))

            @rule(kind=st.sampled_from(sorted(audio)))
            def append(self, kind: str) -> None:
                for chunk in audio[kind]:
                    self.send("input_audio_buffer.append", audio=chunk)

            @rule()
            def commit(self) -> None:
                self.send("input_audio_buffer.commit")

            @rule()
            def clear(self) -> None:
                self.send("input_audio_buffer.clear")

            @rule(text=st.sampled_from(["Hi", "What is two plus two?"]))
            def say(self, text: str) -> None:
                content = [{"type": "input_text", "text": text}]
                item = {"type": "message", "role": "user", "content": content}
                self.send("conversation.item.create", item=item)

            @rule()
            def create(self) -> None:
                self.send("response.create")

            @rule()
            def cancel(self) -> None:
                self.send("response.cancel")

            @rule(end_ms=st.integers(0, 3000), known=st.booleans())
            def truncate(self, end_ms: int, known: bool) -> None:
                item_id = (self.client.last_item() if known else None) or "item_unknown"
                self.send(
                    "conversation.item.truncate",
                    item_id=item_id,
                    content_index=0,
                    audio_end_ms=end_ms,
                )

            @rule(
                detection=st.none()
                | st.fixed_dictionaries(
                    {"type": st.just("server_vad")},
                    optional={
                        "threshold": st.floats(0.3, 0.7),
                        "silence_duration_ms": st.integers(200, 800),
                    },
                )
            )
            def update(self, detection: dict[str, Any] | None) -> None:
                self.send("session.update", session={"turn_detection": detection})

            @rule(raw=garbage)
            def garbage(self, raw: str) -> None:
                call(self.client.ws.send_str(raw))

            @rule(burst=st.integers(2, 20))
            def creates_in_a_burst(self, burst: int) -> None:
                for _ in range(burst):
                    self.send("response.create")

            @invariant()
            def open_and_in_order(self) -> None:
                assert self.client.closed is None, self.client.closed
                assert lifecycle_errors(list(self.client.seen)) == []

            def teardown(self) -> None:
                call(self.client.finish(runtime))

        await asyncio.to_thread(run_state_machine_as_test, Conversation, settings=BOUNDS)
