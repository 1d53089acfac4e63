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
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")  # length: 48 tokens made
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
    assert isinstance(completion.choices[0].message.content, str)
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 0
    assert 1 <= usage.completion_tokens <= 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    ran_out = usage.completion_tokens == 8
    assert completion.choices[0].finish_reason == ("length" if ran_out else "stop")
    short = await client.chat.completions.create(
        model="llm", messages=MESSAGES, max_completion_tokens=2, temperature=0.0
    )
    assert short.usage is not None and short.usage.completion_tokens <= 2


async def test_usage_when_streamed_comes_last_when_asked(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="llm",
        messages=MESSAGES,
        stream=True,
        max_tokens=6,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.prompt_tokens > 0 and 1 <= last.usage.completion_tokens <= 6
    assert all(c.usage is None for c in chunks[:-1])
    plain = await client.chat.completions.create(
        model="llm", messages=MESSAGES, stream=True, max_tokens=6
    )
    assert all(c.usage is None for c in [chunk async for chunk in plain])


async def test_n_choices_whole_and_streamed(client: openai.AsyncOpenAI) -> None:
    whole = await client.chat.completions.create(
        model="llm", messages=MESSAGES, n=2, max_tokens=5, temperature=1.0, seed=3
    )
    assert [c.index for c in whole.choices] == [0, 1]
    assert all(c.message.content for c in whole.choices)
    assert whole.usage is not None
    stream = await client.chat.completions.create(
        model="llm", messages=MESSAGES, n=2, max_tokens=5, stream=True
    )
    finished = [c.choices[0].index async for c in stream if c.choices[0].finish_reason]
    assert finished == [0, 1]


async def test_stop_sequences_cut_the_reply(client: openai.AsyncOpenAI) -> None:
    first = await client.chat.completions.create(
        model="llm", messages=MESSAGES, max_tokens=24, temperature=0.0
    )
    text = first.choices[0].message.content or ""
    assert len(text) > 8, text
    stop = text[5:8]
    cut = await client.chat.completions.create(
        model="llm", messages=MESSAGES, max_tokens=24, temperature=0.0, stop=[stop, "\u2603"]
    )
    assert cut.choices[0].message.content == text[: text.find(stop)]
    assert cut.choices[0].finish_reason == "stop"
    stream = await client.chat.completions.create(
        model="llm", messages=MESSAGES, max_tokens=24, temperature=0.0, stop=stop, stream=True
    )
    streamed = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert streamed == text[: text.find(stop)]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"modalities": ["text", "audio"]}, "modalities"),
    ],
)
async def test_what_is_not_served_is_refused_by_name(
    client: openai.AsyncOpenAI, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(model="llm", messages=MESSAGES, extra_body=extra)
    assert refused.value.body["param"] == param  # type: ignore[index]
    assert refused.value.body["code"] == "unsupported_parameter"  # type: ignore[index]
    # their "off" values are fine
    fine = await client.chat.completions.create(
        model="llm",
        messages=MESSAGES,
        max_tokens=2,
        extra_body={"logprobs": False, "frequency_penalty": 0, "response_format": {"type": "text"}},
    )
    assert fine.choices


async def test_too_many_choices_is_a_named_400(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(model="llm", messages=MESSAGES, n=9)
    assert refused.value.body["param"] == "n"  # type: ignore[index]


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
