"""The gateway's pure rules: which headers cross, ``X-Voice-Waking``, URLs and close codes.

No host here: requests are aiohttp's mocked ones, and the rules are checked on what they return.
"""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from orchestrator.gateway.auth import client_key
from orchestrator.gateway.sockets import refusal, sendable
from orchestrator.gateway.upstream import (
    client_id,
    merge_waking,
    request_headers,
    response_headers,
    ws_headers,
    ws_protocols,
    ws_url,
)


@pytest.mark.parametrize(
    ("host_woke", "upstream", "merged"),
    [
        (True, None, "host"),
        (True, "tts", "host,tts"),
        (True, "asr, tts", "host,asr,tts"),
        (False, "tts", "tts"),
        (False, None, ""),
        (True, "host", "host"),
    ],
)
def test_waking_names_the_host_first(host_woke: bool, upstream: str | None, merged: str) -> None:
    assert merge_waking(host_woke, upstream) == merged


def test_a_request_crosses_with_the_host_key_and_without_hop_headers() -> None:
    request = make_mocked_request(
        "POST",
        "/v1/audio/speech",
        headers=CIMultiDict(
            {
                "Authorization": "Bearer client-key",
                "Host": "gateway.example",
                "Connection": "keep-alive, X-Private",
                "X-Private": "hop",
                "Keep-Alive": "timeout=5",
                "Transfer-Encoding": "chunked",
                "TE": "trailers",
                "Upgrade": "h2c",
                "Proxy-Authorization": "Basic x",
                "Cookie": "session=1",
                "Expect": "100-continue",
                "Content-Type": "application/json",
                "Content-Length": "17",
                "X-Forwarded-For": "10.1.1.1",
                "OpenAI-Beta": "assistants=v2",
                "X-Voice-Client": "someone-else",  # a client cannot name another client
            }
        ),
    )
    sent = request_headers(request, "host-key")
    assert dict(sent) == {
        "Content-Type": "application/json",
        "Content-Length": "17",  # the body is streamed byte for byte: its length holds
        "X-Forwarded-For": "10.1.1.1",  # a mocked request has no peer address to add
        "OpenAI-Beta": "assistants=v2",
        "X-Forwarded-Proto": "http",
        "X-Voice-Client": client_id("client-key"),  # who it is, without the key itself
        "Authorization": "Bearer host-key",
    }
    assert "client-key" not in client_id("client-key")


def test_a_response_crosses_without_hop_headers_and_with_the_waking_merged() -> None:
    upstream = CIMultiDict(
        {
            "Content-Type": "text/event-stream",
            "Transfer-Encoding": "chunked",
            "Connection": "keep-alive",
            "Keep-Alive": "timeout=5",
            "Date": "Tue, 01 Dec 2026 02:00:00 GMT",
            "Server": "Python/3.11 aiohttp",
            "X-Voice-Waking": "llm",
            "Cache-Control": "no-cache",
        }
    )
    assert dict(response_headers(upstream, host_woke=True)) == {
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "X-Voice-Waking": "host,llm",
    }


def test_a_socket_to_the_host_offers_only_what_the_host_reads() -> None:
    request = make_mocked_request(
        "GET",
        "/v1/realtime?model=gpt-realtime",
        headers=CIMultiDict(
            {
                "Sec-WebSocket-Protocol": "realtime, openai-insecure-api-key.client-key, x",
                "OpenAI-Beta": "realtime=v1",
                "Cookie": "session=1",
            }
        ),
    )
    assert client_key(request) == "client-key"
    assert ws_protocols(request) == ["realtime"]
    headers = ws_headers(request, "host-key")
    assert headers["Authorization"] == "Bearer host-key" and headers["OpenAI-Beta"] == "realtime=v1"
    assert "Cookie" not in headers and "Sec-WebSocket-Protocol" not in headers
    url = ws_url("https://10.0.0.5:11400/", request.raw_path)
    assert str(url) == "wss://10.0.0.5:11400/v1/realtime?model=gpt-realtime"
    assert str(ws_url("http://h:1", "/v1/duplex?text_prompt=a%20b")) == (
        "ws://h:1/v1/duplex?text_prompt=a%20b"  # the client's encoding, untouched
    )


@pytest.mark.parametrize(
    ("status", "code", "close"),
    [
        (400, "bad_request", 1008),
        (429, "too_many_requests", 1008),
        (503, "service_unavailable", 1013),
        (401, "host_key_rejected", 1011),
        (500, "host_refused", 1011),
    ],
)
def test_a_refused_upgrade_maps_to_an_error_and_a_close(status: int, code: str, close: int) -> None:
    error, close_code = refusal(status)
    assert (error.code, close_code) == (code, close)


def test_only_sendable_close_codes_are_sent() -> None:
    assert [sendable(c, 1001) for c in (1000, 1009, 4000, 1005, 1006, 1015, None, 999)] == [
        1000,
        1009,
        4000,
        1001,
        1001,
        1001,
        1001,
        1001,
    ]
