"""Bad input on the REST routes: each class answers its exact status and code, and the server
serves the next good request.

The server runs on the tiny cascade engines with the options ``orchestrator.server`` gives
the real one (idle timeout), and small bounds so that a test can reach them: 3 s of decoded
audio, a 0.5 s body timeout, a 0.5 s idle timeout.
"""

from __future__ import annotations

import asyncio
import io
import json
import wave
from typing import Any

import av
import numpy as np
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from orchestrator.api.app import create_api_app
from orchestrator.api.errors import MAX_JSON_BYTES
from orchestrator.api.images import chat_body_limit
from orchestrator.app.runtime import Runtime
from orchestrator.config import ApiConfig, AppConfig
from orchestrator.server import runner_options
from tests.conftest import API_KEY, RuntimeFactory

AUTH = {"Authorization": f"Bearer {API_KEY}"}
MAX_AUDIO_S = 3.0
HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture
async def runtime(make_runtime: RuntimeFactory, cascade_config: AppConfig) -> Runtime:
    config = cascade_config.model_copy(
        update={
            "api": ApiConfig(max_audio_s=MAX_AUDIO_S, body_timeout_s=0.5),
            "server": cascade_config.server.model_copy(update={"idle_timeout_s": 0.5}),
        }
    )
    return make_runtime(config, writer=True)


@pytest.fixture
async def server(runtime: Runtime, aiohttp_server: Any) -> TestServer:
    options = runner_options(runtime.config.server)
    server: TestServer = await aiohttp_server(create_api_app(runtime), **options)
    return server


@pytest.fixture
async def http() -> Any:
    async with ClientSession(headers=AUTH) as session:
        yield session


def url(server: TestServer, path: str) -> str:
    return f"http://{server.host}:{server.port}{path}"


async def expect(
    response: Any, status: int, code: str, param: str | None = None, says: str = ""
) -> None:
    async with response:
        body = await response.json()
    assert response.status == status, body
    error = body["error"]
    assert error["code"] == code, error
    assert error["type"] == ("invalid_request_error" if status < 500 else "server_error")
    assert error["param"] == param, error
    assert says in error["message"], error


async def still_serves(server: TestServer, http: ClientSession) -> None:
    """A good request after the bad one: the server, and the engines, still answer."""
    async with http.post(
        url(server, "/v1/audio/speech"), json={"input": "Hello.", "response_format": "wav"}
    ) as response:
        assert response.status == 200, await response.text()
        assert len(await response.read()) > 1000


# -- typed JSON bodies ---------------------------------------------------------------------

SPEECH_CASES = [
    ({"model": ["tts-1"], "input": "Hi."}, "invalid_type", "model"),
    ({"model": {"a": 1}, "input": "Hi."}, "invalid_type", "model"),
    ({"input": "Hi.", "response_format": ["mp3"]}, "invalid_value", "response_format"),
    ({"input": "Hi.", "response_format": {"x": 1}}, "invalid_value", "response_format"),
    ({"input": "Hi.", "voice": 7}, "invalid_type", "voice"),
    ({"input": "Hi.", "speed": "fast"}, "invalid_type", "speed"),
    ({"input": "Hi.", "speed": 9}, "invalid_value", "speed"),
    ({"input": 42}, "invalid_type", "input"),
    ({"voice": "alloy"}, "missing_required_parameter", "input"),
    ({"input": "a" * 5000}, "string_above_max_length", "input"),
    ({"input": "Hi.", "colour": "blue"}, "unknown_parameter", "colour"),
    ({"input": "a\x00b"}, "invalid_text", "input"),
    ({"input": "a\ud800b"}, "invalid_text", "input"),
]


@pytest.mark.parametrize(("body", "code", "param"), SPEECH_CASES)
async def test_speech_body_is_typed(
    server: TestServer, http: ClientSession, body: dict[str, Any], code: str, param: str
) -> None:
    response = await http.post(url(server, "/v1/audio/speech"), json=body)
    await expect(response, 400, code, param)
    await still_serves(server, http)


@pytest.mark.parametrize("text", ["...", "?!"])
async def test_speech_with_nothing_to_speak_is_a_400(
    server: TestServer, http: ClientSession, text: str
) -> None:
    response = await http.post(url(server, "/v1/audio/speech"), json={"input": text})
    await expect(response, 400, "nothing_to_speak", "input")
    await still_serves(server, http)


CHAT_CASES = [
    ({"model": ["llm"], "messages": HELLO}, "invalid_type", "model"),
    ({"messages": HELLO, "temperature": "hot"}, "invalid_type", "temperature"),
    ({"messages": HELLO, "temperature": 3}, "invalid_value", "temperature"),
    ({"messages": HELLO, "max_tokens": 0}, "invalid_value", "max_tokens"),
    ({"messages": HELLO, "max_tokens": True}, "invalid_type", "max_tokens"),
    ({"messages": HELLO, "stream": "yes"}, "invalid_type", "stream"),
    ({"messages": HELLO, "top_p": "most"}, "invalid_type", "top_p"),
    ({"messages": HELLO, "stop": 5}, "invalid_type", "stop"),  # ignored, still typed
    ({"messages": HELLO, "wizardry": 1}, "unknown_parameter", "wizardry"),
    ({"messages": "hello"}, "invalid_type", "messages"),
    ({"messages": []}, "invalid_value", "messages"),
    ({}, "missing_required_parameter", "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "invalid_value", "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "invalid_type", "messages[0].content"),
    (
        {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
        "invalid_type",
        "messages[0].content[0].text",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "sound"}]}]},
        "invalid_value",
        "messages[0].content[0].type",
    ),
]


@pytest.mark.parametrize(("body", "code", "param"), CHAT_CASES)
async def test_chat_body_is_typed(
    server: TestServer, http: ClientSession, body: dict[str, Any], code: str, param: str
) -> None:
    response = await http.post(url(server, "/v1/chat/completions"), json=body)
    await expect(response, 400, code, param)
    await still_serves(server, http)


async def test_chat_with_an_image_and_no_vision_engine_is_refused(
    server: TestServer, http: ClientSession
) -> None:
    """An image is never silently dropped: without a VLM engine it is a 400 naming why (with
    one, tests/test_vlm_api.py)."""
    content = [
        {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}},
        {"type": "text", "text": "Hello"},
    ]
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": 4}
    async with http.post(url(server, "/v1/chat/completions"), json=body) as response:
        assert response.status == 400, await response.text()
        error = (await response.json())["error"]
        assert (error["code"], error["param"]) == ("images_not_supported", "messages")


# -- JSON bounds ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/audio/speech", "/v1/chat/completions"])
async def test_json_nested_too_deep_is_a_400(
    server: TestServer, http: ClientSession, path: str
) -> None:
    deep = b'{"input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    headers = {"Content-Type": "application/json"}
    await expect(
        await http.post(url(server, path), data=deep, headers=headers), 400, "invalid_json"
    )
    moderate = b'{"input": ' + b"[" * 40 + b"]" * 40 + b"}"  # parses, still over the bound
    response = await http.post(url(server, path), data=moderate, headers=headers)
    await expect(response, 400, "invalid_json", says="deeper than")
    await still_serves(server, http)


@pytest.mark.parametrize(
    ("path", "limit"),
    [
        ("/v1/audio/speech", MAX_JSON_BYTES),
        ("/v1/chat/completions", chat_body_limit(ApiConfig())),  # room for images too
    ],
)
async def test_oversized_json_is_a_413(
    server: TestServer, http: ClientSession, path: str, limit: int
) -> None:
    big = json.dumps({"input": "a" * (limit + 1)}).encode()
    response = await http.post(url(server, path), data=big)
    await expect(response, 413, "request_entity_too_large")
    await still_serves(server, http)


@pytest.mark.parametrize("data", [b"{nope", b"[1, 2]", b"\xff\xfe"])
async def test_not_a_json_object_is_a_400(
    server: TestServer, http: ClientSession, data: bytes
) -> None:
    response = await http.post(url(server, "/v1/audio/speech"), data=data)
    await expect(response, 400, "invalid_json")
    await still_serves(server, http)


# -- multipart forms -----------------------------------------------------------------------


def wav(seconds: float, rate: int = 16_000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.zeros(int(seconds * rate), dtype=np.int16).tobytes())
    return buffer.getvalue()


def encoded(fmt: str, codec: str, seconds: float, title: str | None = None) -> bytes:
    """``seconds`` of silence in ``fmt``, made with PyAV."""
    rate, frame = 48_000, 960
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=fmt) as container:
        if title is not None:
            container.metadata["title"] = title
        stream = container.add_stream(codec, rate=rate, layout="mono")
        for index in range(int(seconds * rate) // frame):
            samples = av.AudioFrame.from_ndarray(
                np.zeros((1, frame), dtype=np.int16), format="s16", layout="mono"
            )
            samples.sample_rate, samples.pts = rate, index * frame
            for packet in stream.encode(samples):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def form(file: bytes | None, **fields: bytes) -> tuple[bytes, dict[str, str]]:
    boundary = "XyZzY"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + value
        + b"\r\n"
        for name, value in fields.items()
    ]
    if file is not None:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + file
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


async def transcribe(server: TestServer, http: ClientSession, file: bytes, **fields: bytes) -> Any:
    body, headers = form(file, **fields)
    return await http.post(url(server, "/v1/audio/transcriptions"), data=body, headers=headers)


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("multipart/form-data", b'--x\r\nContent-Disposition: form-data; name="file"\r\n\r\nA'),
        ("multipart/form-data; boundary=XyZzY", b"\x00\xffgarbage, not a form at all"),
        ("multipart/form-data; boundary=XyZzY", b"--XyZzY\r\nno headers end here"),
    ],
)
async def test_malformed_multipart_is_a_400(
    server: TestServer, http: ClientSession, content_type: str, data: bytes
) -> None:
    path = url(server, "/v1/audio/transcriptions")
    response = await http.post(path, data=data, headers={"Content-Type": content_type})
    await expect(response, 400, "invalid_multipart")
    await still_serves(server, http)


async def test_form_fields_are_typed(server: TestServer, http: ClientSession) -> None:
    response = await transcribe(server, http, wav(1), language=b"\xff\xfeen")
    await expect(response, 400, "invalid_encoding", "language")
    response = await transcribe(server, http, wav(1), response_format=b"srt")
    await expect(response, 400, "invalid_value", "response_format")
    response = await transcribe(server, http, wav(1), temperature=b"warm")
    await expect(response, 400, "invalid_type", "temperature")
    response = await transcribe(server, http, wav(1), colour=b"blue")
    await expect(response, 400, "unknown_parameter", "colour")
    body, headers = form(None, model=b"whisper-1")
    response = await http.post(url(server, "/v1/audio/transcriptions"), data=body, headers=headers)
    await expect(response, 400, "missing_required_parameter", "file")
    await still_serves(server, http)


# -- decoded audio bounds ------------------------------------------------------------------


@pytest.mark.parametrize(
    "make", [lambda s: wav(s), lambda s: encoded("flac", "flac", s)], ids=["wav", "flac"]
)
async def test_audio_longer_than_the_limit_is_a_413(
    server: TestServer, http: ClientSession, make: Any
) -> None:
    response = await transcribe(server, http, make(MAX_AUDIO_S + 5))
    await expect(response, 413, "audio_too_long", says=f"limit of {MAX_AUDIO_S:g} s")
    async with await transcribe(server, http, make(MAX_AUDIO_S - 1)) as short:
        assert short.status == 200, await short.text()
    await still_serves(server, http)


async def test_webm_metadata_that_is_not_utf8(server: TestServer, http: ClientSession) -> None:
    marker = "TITLEMARKER"
    webm = encoded("webm", "libopus", 1.0, title=marker)
    assert webm.count(marker.encode()) == 1
    latin1 = webm.replace(marker.encode(), b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5")
    # The metadata is never used: the audio is still transcribed.
    async with await transcribe(server, http, latin1) as response:
        assert response.status == 200, await response.text()
    # Cut short as well, it is a bad upload, not our error.
    response = await transcribe(server, http, latin1[: len(latin1) // 3])
    await expect(response, 400, "invalid_input", says="could not decode")
    await still_serves(server, http)


# -- idle and slow connections -------------------------------------------------------------


async def _closed_by_server(server: TestServer, first_bytes: bytes, timeout: float = 10) -> bytes:
    """Open a raw connection, send ``first_bytes``, and read until the server closes it."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        if first_bytes:
            writer.write(first_bytes)
            await writer.drain()
        async with asyncio.timeout(timeout):  # the server closes it well before this
            return await reader.read()  # b"" (or the server's last words) then EOF
    finally:
        writer.close()


async def test_an_idle_connection_is_closed(server: TestServer, http: ClientSession) -> None:
    assert await _closed_by_server(server, b"") == b""
    half = b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Le"  # never finishes
    assert await _closed_by_server(server, half) == b""
    await still_serves(server, http)


async def test_a_body_that_trickles_is_a_408(server: TestServer, http: ClientSession) -> None:
    head = (
        "POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(head + b'{"input": ')  # 10 of the 100 bytes promised, then nothing
        await writer.drain()
        async with asyncio.timeout(10):  # the server answers after body_timeout_s (0.5 s)
            status = await reader.readline()
            headers = await reader.readuntil(b"\r\n\r\n")
            length = int(headers.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            body = json.loads(await reader.readexactly(length))
    finally:
        writer.close()
    assert status.startswith(b"HTTP/1.1 408"), status
    assert body["error"]["code"] == "request_timeout"
    await still_serves(server, http)
