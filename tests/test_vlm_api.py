"""Chat about images through ``/v1/chat/completions`` with the official ``openai`` client: the
tiny random LLaVA answers chats with ``image_url`` parts, the tiny LLM the others; bad images
are 4xx with stable codes; remote URLs are fetched only from the hosts the config allows."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from orchestrator.api.app import create_api_app
from orchestrator.app.runtime import Runtime
from orchestrator.config import AppConfig
from tests.conftest import API_KEY, RuntimeFactory
from tests.vision_helpers import data_url, image_bytes

PHOTO = image_bytes(64, 48)


async def sdk(runtime: Runtime, aiohttp_server: Any) -> openai.AsyncOpenAI:
    server: TestServer = await aiohttp_server(create_api_app(runtime))
    return openai.AsyncOpenAI(
        api_key=API_KEY,
        base_url=f"http://{server.host}:{server.port}/v1",
        websocket_base_url=f"ws://{server.host}:{server.port}/v1",  # the Realtime tests'
        max_retries=0,
    )


@pytest.fixture
async def client(
    make_runtime: RuntimeFactory, vlm_config: AppConfig, aiohttp_server: Any
) -> openai.AsyncOpenAI:
    return await sdk(make_runtime(vlm_config, writer=True), aiohttp_server)


def about(url: str, *more: str) -> Any:
    parts: list[dict[str, Any]] = [{"type": "text", "text": "What is the answer on this page?"}]
    parts += [{"type": "image_url", "image_url": {"url": u}} for u in (url, *more)]
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": parts}]


async def test_a_chat_with_an_image_is_answered_by_the_vlm(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="gpt-4o", messages=about(data_url(PHOTO)), max_tokens=5
    )
    assert completion.model == "vlm"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content  # noise, but words
    usage = completion.usage
    assert usage is not None and 1 <= usage.completion_tokens <= 5
    # the same text without the image is the LLM's, and its prompt lacks the image's tokens
    text_only = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "What is the answer?"}]
    )
    assert text_only.model == "llm"


async def test_a_streamed_chat_about_two_images(client: openai.AsyncOpenAI) -> None:
    jpeg = image_bytes(30, 30, "JPEG")
    stream = await client.chat.completions.create(
        model="vlm",
        messages=about(data_url(PHOTO), data_url(jpeg, "image/jpeg")),
        stream=True,
        max_tokens=4,
    )
    chunks = [chunk async for chunk in stream]
    assert {c.model for c in chunks} == {"vlm"}
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


async def refused(client: openai.AsyncOpenAI, messages: Any) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=messages)
    return caught.value


URL = "messages[1].content[1].image_url.url"


@pytest.mark.parametrize(
    ("url", "status", "code", "param"),
    [
        (data_url(image_bytes(400, 300)), 413, "image_too_many_pixels", URL),
        (data_url(b"\x89PNG" + bytes(30000)), 413, "image_too_large", URL),
        (data_url(b"these are words, not pixels"), 400, "invalid_image", URL),
        (data_url(PHOTO[: len(PHOTO) // 2]), 400, "invalid_image", URL),  # truncated
        (data_url(image_bytes(20, 20, "BMP"), "image/bmp"), 400, "invalid_image", URL),
        ("data:image/png;base64,@@@not-base64@@@", 400, "invalid_image_url", URL),
        ("data:image/png," + "x" * 10, 400, "invalid_image_url", URL),
        ("file:///etc/passwd", 400, "invalid_image_url", URL),
        ("http://169.254.169.254/latest/meta-data", 400, "image_url_not_allowed", URL),
    ],
)
async def test_bad_images_are_refused_with_a_code(
    client: openai.AsyncOpenAI, url: str, status: int, code: str, param: str
) -> None:
    error = await refused(client, about(url))
    assert (error.status_code, error.code, error.param) == (status, code, param)


async def test_too_many_images(client: openai.AsyncOpenAI) -> None:
    error = await refused(client, about(*[data_url(PHOTO)] * 4))
    assert (error.status_code, error.code) == (400, "too_many_images")


@pytest.fixture
async def image_host(aiohttp_server: Any) -> str:
    """A web server with a photo, a missing file, a redirect and a large file."""

    async def photo(request: web.Request) -> web.Response:
        return web.Response(body=PHOTO, content_type="image/png")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/photo.png")

    async def large(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(10):
            await response.write(bytes(4096))
        return response

    app = web.Application()
    app.router.add_get("/photo.png", photo)
    app.router.add_get("/moved.png", redirect)
    app.router.add_get("/large.png", large)
    server: TestServer = await aiohttp_server(app)
    return f"{server.host}:{server.port}"


async def test_remote_images_only_from_allowed_hosts(
    client: openai.AsyncOpenAI, image_host: str
) -> None:
    completion = await client.chat.completions.create(
        model="gpt-4o", messages=about(f"http://{image_host}/photo.png"), max_tokens=3
    )
    assert completion.model == "vlm" and completion.choices[0].message.content
    port = image_host.rpartition(":")[2]
    other = await refused(client, about(f"http://localhost:{port}/photo.png"))
    assert (other.status_code, other.code) == (400, "image_url_not_allowed")
    assert "'localhost'" in other.message
    for path, status, code in [
        ("missing.png", 400, "image_fetch_failed"),
        ("moved.png", 400, "image_fetch_failed"),  # a redirect is never followed
        ("large.png", 413, "image_too_large"),
    ]:
        error = await refused(client, about(f"http://{image_host}/{path}"))
        assert (error.status_code, error.code) == (status, code), path


async def test_without_a_vlm_images_are_refused(
    cascade_runtime: Runtime, aiohttp_server: Any
) -> None:
    client = await sdk(cascade_runtime, aiohttp_server)
    error = await refused(client, about(data_url(PHOTO)))
    assert (error.status_code, error.code) == (400, "images_not_supported")


async def test_the_body_bound_makes_room_for_the_images_only(client: openai.AsyncOpenAI) -> None:
    """The 1 MiB JSON bound grows by ``max_images`` data URLs of ``max_image_bytes`` (here
    3 x 20000 bytes), no more: 1 MiB and a bit is read, 4 MiB is a 413 before it is parsed."""
    within = [{"role": "user", "content": "x" * ((1 << 20) + 50_000)}]
    with pytest.raises(openai.BadRequestError) as parsed:  # read and parsed: its fault is named
        await client.chat.completions.create(model="gpt-4o", messages=within, temperature=5)
    assert parsed.value.param == "temperature"
    error = await refused(client, [{"role": "user", "content": "x" * (4 << 20)}])
    assert error.status_code == 413
