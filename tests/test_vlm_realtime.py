"""A photo in a Realtime conversation: ``conversation.item.create`` with an ``input_image`` part
(OpenAI's GA shape, sent by the ``openai`` SDK's GA client), then ``response.create``: the reply
is the tiny VLM's, which was given the photo; bad images are ``error`` events and the session
goes on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from orchestrator.app.runtime import Runtime
from orchestrator.config import AppConfig
from services.vision import images_of
from tests.conftest import RuntimeFactory
from tests.test_vlm_api import sdk
from tests.vision_helpers import data_url, image_bytes


def photo_item(url: str, text: str = "What is the answer on this page?") -> Any:
    content = [{"type": "input_text", "text": text}, {"type": "input_image", "image_url": url}]
    return {"type": "message", "role": "user", "content": content}


async def until(connection: Any, kind: str, seen: list[str]) -> Any:
    async with asyncio.timeout(60):  # a bound for a broken server, not a timing assertion
        async for event in connection:
            seen.append(event.type)
            if event.type == "error" and kind != "error":
                seen.append(f"{event.error.code}: {event.error.message}")
            if event.type == kind:
                return event
    raise AssertionError(f"the socket closed before {kind}: {seen}")


async def test_the_next_reply_sees_the_photo(
    make_runtime: RuntimeFactory, vlm_config: AppConfig, aiohttp_server: Any
) -> None:
    runtime = make_runtime(vlm_config, writer=True)
    asked: dict[str, list[list[dict[str, Any]]]] = {"vlm": [], "llm": []}
    for name in asked:
        engine = runtime.fleet.engine(name)
        original = engine.chat  # type: ignore[attr-defined]

        def spy(
            messages: list[dict[str, Any]], *, _to: str = name, _chat: Any = original, **kw: Any
        ) -> AsyncGenerator[str, None]:
            asked[_to].append(messages)
            return _chat(messages, **kw)  # type: ignore[no-any-return]

        engine.chat = spy  # type: ignore[attr-defined]
    client = await sdk(runtime, aiohttp_server)
    seen: list[str] = []
    async with client.realtime.connect(model="cascade") as connection:
        await connection.session.update(session={"type": "realtime", "instructions": "Tutor."})
        await until(connection, "session.updated", seen)
        await connection.conversation.item.create(item=photo_item(data_url(image_bytes(64, 48))))
        created = await until(connection, "conversation.item.added", seen)  # GA's name
        kinds = [part.type for part in created.item.content]
        assert kinds == ["input_text", "input_image"], seen
        await connection.response.create()
        done = await until(connection, "response.done", seen)
        assert done.response.status == "completed", seen
    assert "response.output_audio.delta" in seen  # spoken, as every cascade reply
    assert asked["llm"] == [] and len(asked["vlm"]) == 1
    (sent,) = [images_of(m) for m in asked["vlm"][0] if images_of(m)]
    assert [(i.format, i.width, i.height) for i in sent] == [("png", 64, 48)]


@pytest.mark.parametrize(
    ("url", "code"),
    [
        (data_url(image_bytes(400, 300)), "image_too_many_pixels"),
        (data_url(b"no pixels here"), "invalid_image"),
        ("https://example.com/photo.png", "image_url_not_allowed"),
    ],
)
async def test_a_bad_photo_is_an_error_event_and_the_session_goes_on(
    make_runtime: RuntimeFactory,
    vlm_config: AppConfig,
    aiohttp_server: Any,
    url: str,
    code: str,
) -> None:
    client = await sdk(make_runtime(vlm_config, writer=True), aiohttp_server)
    seen: list[str] = []
    async with client.realtime.connect(model="cascade") as connection:
        await until(connection, "session.created", seen)
        await connection.conversation.item.create(item=photo_item(url))
        error = await until(connection, "error", seen)
        assert (error.error.code, error.error.param) == (code, "item.content")
        await connection.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Hi"}],
            }
        )
        await until(connection, "conversation.item.created", seen)  # still serving


async def test_without_a_vlm_a_photo_is_refused(
    cascade_runtime: Runtime, aiohttp_server: Any
) -> None:
    client = await sdk(cascade_runtime, aiohttp_server)
    seen: list[str] = []
    async with client.realtime.connect(model="cascade") as connection:
        await until(connection, "session.created", seen)
        await connection.conversation.item.create(item=photo_item(data_url(image_bytes())))
        error = await until(connection, "error", seen)
        assert error.error.code == "images_not_supported"
