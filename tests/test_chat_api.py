"""``/v1/chat/completions`` with the official ``openai`` client, streamed and not."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestServer

from orchestrator.api.app import create_api_app
from orchestrator.app.runtime import Runtime
from orchestrator.core.idle import IdleState
from tests.conftest import API_KEY

MESSAGES: Any = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


@pytest.fixture
async def runtime(cascade_runtime: Runtime) -> Runtime:
    return cascade_runtime


@pytest.fixture
async def client(runtime: Runtime, aiohttp_server: Any) -> openai.AsyncOpenAI:
    server: TestServer = await aiohttp_server(create_api_app(runtime))
    return openai.AsyncOpenAI(
        base_url=f"http://{server.host}:{server.port}/v1", api_key=API_KEY, max_retries=0
    )


async def streamed(client: openai.AsyncOpenAI, seed: int) -> list[Any]:
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, temperature=1.0, max_tokens=48, seed=seed
    )
    return [chunk async for chunk in stream]


async def test_streamed_chat(client: openai.AsyncOpenAI) -> None:
    # a fixed seed makes the tiny model's sampled reply the same each run: one that has words
    # (the model streams word by word), so the stream has several content chunks
    chunks = await streamed(client, seed=1)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len(chunks) > 3  # it really streamed
    again = await streamed(client, seed=1)
    assert "".join(c.choices[0].delta.content or "" for c in again) == text
    with pytest.raises(openai.BadRequestError, match="invalid 'seed'"):
        await client.chat.completions.create(model="llm", messages=MESSAGES, seed="x")  # type: ignore[arg-type]


async def test_whole_chat_and_limits(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="llm", messages=MESSAGES, max_tokens=8, temperature=0.0
    )
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert isinstance(completion.choices[0].message.content, str)


async def test_bad_requests(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="does not exist for llm"):
        await client.chat.completions.create(model="llama-900b", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError, match="at least 1 item"):
        await client.chat.completions.create(model="llm", messages=[])
    with pytest.raises(openai.BadRequestError, match="role"):
        await client.chat.completions.create(
            model="llm",
            messages=[{"role": "wizard", "content": "x"}],  # type: ignore[list-item,misc]
        )


async def test_chat_wakes_a_hibernated_llm(client: openai.AsyncOpenAI, runtime: Runtime) -> None:
    await runtime.hibernator.force(IdleState.COLD)
    response = await client.chat.completions.with_raw_response.create(
        model="llm", messages=MESSAGES, max_tokens=4
    )
    assert response.headers["x-voice-waking"] == "llm"
    await runtime.hibernator.settled()
    assert runtime.hibernator.state is IdleState.ACTIVE
