"""A replica's places: one per session or request the ingress sent it, held until it ends.

Ray Serve counts a replica's ongoing requests (for ``max_ongoing_requests``, autoscaling and the
drain before a replica stops), but our sessions do not travel through Ray: the ingress connects
to the replica's own voice API. So the ingress first asks the replica for a place (a streaming
call that Ray counts), gets a ticket, and sends it with the request (``X-Voice-Ticket``); the
middleware here marks the ticket claimed when the request arrives and released when its handler
returns (a WebSocket's handler returns when the session ends). The place is given back then, or
after ``claim_timeout_s`` when the request never came (the ingress failed on the way).
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

TICKET_HEADER = "X-Voice-Ticket"


@dataclass
class _Place:
    claimed: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)


class TicketBook:
    def __init__(self) -> None:
        self._places: dict[str, _Place] = {}

    def issue(self) -> str:
        ticket = secrets.token_urlsafe(16)
        self._places[ticket] = _Place()
        return ticket

    def claim(self, ticket: str) -> bool:
        place = self._places.get(ticket)
        if place is None or place.claimed.is_set():
            return False  # unknown, or already used: the request is served without a place
        place.claimed.set()
        return True

    def release(self, ticket: str) -> None:
        place = self._places.get(ticket)
        if place is not None:
            place.released.set()

    async def held(self, ticket: str, claim_timeout_s: float) -> bool:
        """Wait while the place is in use; False when its request never came."""
        place = self._places[ticket]
        try:
            try:
                async with asyncio.timeout(claim_timeout_s):
                    await place.claimed.wait()
            except TimeoutError:
                return False
            await place.released.wait()
            return True
        finally:
            del self._places[ticket]

    def __len__(self) -> int:
        return len(self._places)


def ticket_middleware(book: TicketBook) -> Middleware:
    """Outermost, so a refused request (401, 429) gives its place back too."""

    @web.middleware
    async def tickets(request: web.Request, handler: Handler) -> web.StreamResponse:
        ticket = request.headers.get(TICKET_HEADER, "")
        if not ticket or not book.claim(ticket):
            return await handler(request)
        try:
            return await handler(request)
        finally:
            book.release(ticket)

    return tickets
