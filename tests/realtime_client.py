"""A raw ``/v1/realtime`` client for the tests: send events, wait for the next of a kind."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from tests.conftest import API_KEY


class Socket:
    """A raw client: send events, wait for the next event of a given type."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def send(self, type_: str, **fields: Any) -> None:
        await self.ws.send_str(json.dumps({"type": type_, **fields}))

    async def until(self, type_: str, timeout: float = 60) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                message = await self.ws.receive()
                assert message.type is aiohttp.WSMsgType.TEXT, message
                event = json.loads(message.data)
                self.seen.append(event)
                if event["type"] == type_:
                    return event
                if event["type"] == "error" and type_ != "error":
                    raise AssertionError(f"waiting for {type_}: {event['error']}")

    async def say(self, text: str) -> None:
        """Add a typed user message to the conversation."""
        await self.send(
            "conversation.item.create",
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": text}],
            },
        )

    def types(self) -> list[str]:
        return [e["type"] for e in self.seen]


async def connect(server: TestServer, http: aiohttp.ClientSession) -> Socket:
    ws = await http.ws_connect(
        f"http://{server.host}:{server.port}/v1/realtime",
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    return Socket(ws)
