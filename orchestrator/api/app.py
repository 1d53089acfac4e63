"""The voice API application on port 11400: health endpoints and metrics, behind an API key.

Every route needs ``Authorization: Bearer <key>`` except ``server.open_paths`` (by default only
the liveness probe). Reading health never counts as voice activity.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST

from orchestrator.api.chat import add_chat_routes
from orchestrator.api.duplex import add_duplex_routes
from orchestrator.api.errors import WireError, error_response, json_errors
from orchestrator.api.models import add_model_routes
from orchestrator.api.realtime.route import add_realtime_routes
from orchestrator.api.speech import MAX_UPLOAD_BYTES, add_voice_routes
from orchestrator.api.translate import PATHS as LIBRETRANSLATE_PATHS
from orchestrator.api.translate import add_translate_routes, with_body_key
from orchestrator.app.runtime import API_KEY_USED, RUNTIME, Runtime
from orchestrator.fleet import health
from services.base import EngineState

log = logging.getLogger(__name__)

_STATES = [*(s.value for s in EngineState), "downloading"]
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # the route label of every path no route serves (bounded cardinality)


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every request by its route's template, never the raw path; outermost,
    so refusals (401, 404) and rendered errors are counted with the status the client saw."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else UNMATCHED
    method = request.method if request.method in _METHODS else "other"
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away before an answer (nginx's code for it)
        raise
    finally:
        upgraded = status == 101  # a WebSocket: its time is a session's, not a request's
        seconds = None if upgraded else time.perf_counter() - started
        request.app[RUNTIME].metrics.request_finished(route, method, status, seconds)


@web.middleware
async def require_api_key(request: web.Request, handler: Handler) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    if request.path in runtime.config.server.open_paths:
        return await handler(request)
    token = presented_key(request.headers)
    if not token and request.path in LIBRETRANSLATE_PATHS:
        return await with_body_key(request, handler)  # LibreTranslate's api_key field
    if not token or not runtime.secrets.api_key_valid(token):
        return error_response(BAD_KEY, headers={"WWW-Authenticate": "Bearer"})
    request[API_KEY_USED] = token
    return await handler(request)


BAD_KEY = WireError(
    401, "invalid_api_key", "missing or invalid API key: send 'Authorization: Bearer <key>'"
)


def presented_key(headers: Mapping[str, str]) -> str:
    """The key a request presents: ``Authorization: Bearer K``, else (browsers cannot set
    headers on a WebSocket) OpenAI's ``Sec-WebSocket-Protocol: openai-insecure-api-key.K``.
    The scale-out ingress checks keys with it too, before it wakes a replica."""
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return token.strip()
    for protocol in headers.get("Sec-WebSocket-Protocol", "").split(","):
        name, _, key = protocol.strip().partition("openai-insecure-api-key.")
        if not name and key:
            return key.strip()
    return ""


async def live(request: web.Request) -> web.Response:
    """The process is up and its event loop answers."""
    return web.json_response({"status": "alive"})


async def ready(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    statuses = await runtime.fleet.statuses()
    route = runtime.config.routing.default
    is_ready = health.ready(statuses, route, shutting_down=runtime.shutting_down)
    body = {
        "ready": is_ready,
        "route": list(route),
        "engines": {s.name: s.state for s in statuses if s.name in route},
    }
    return web.json_response(body, status=200 if is_ready else 503)


async def health_summary(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    body = health.summary(
        await runtime.fleet.statuses(),
        profile=runtime.config.profile,
        hibernation=runtime.hibernation_summary(),
        shutting_down=runtime.shutting_down,
        credits=await asyncio.to_thread(runtime.credits),
        vram=await runtime.fleet.vram_budget(),
        host_ram=await asyncio.to_thread(runtime.fleet.host_room.summary),
        uptime_s=runtime.uptime(),
    )
    return web.json_response(body)


async def metrics(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    for status in await runtime.fleet.statuses():
        runtime.metrics.set_engine_state(status.name, status.state, _STATES)
        mem = status.memory
        runtime.metrics.set_engine_memory(status.name, "ram", "estimated", mem.estimated_ram_bytes)
        runtime.metrics.set_engine_memory(status.name, "ram", "measured", mem.measured_ram_bytes)
        runtime.metrics.set_engine_memory(
            status.name, "vram", "estimated", mem.estimated_vram_bytes
        )
        runtime.metrics.set_engine_memory(status.name, "vram", "measured", mem.measured_vram_bytes)
        runtime.metrics.set_engine_memory(status.name, "ram", "parked", mem.parked_ram_bytes or 0)
    runtime.metrics.set_time_in_state(runtime.clock())
    runtime.metrics.set_sessions(
        (summary.get("protocol", "realtime"), summary["backend"])
        for summary in runtime.session_summaries()
    )
    runtime.metrics.set_credits(await asyncio.to_thread(runtime.credits))
    return web.Response(
        body=runtime.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def create_api_app(runtime: Runtime) -> web.Application:
    app = web.Application(
        middlewares=[count_requests, json_errors, require_api_key],
        client_max_size=MAX_UPLOAD_BYTES + 2**20,
    )
    app[RUNTIME] = runtime
    app.router.add_get("/health", health_summary)
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/metrics", metrics)
    add_voice_routes(app)
    add_model_routes(app)
    add_realtime_routes(app)
    add_chat_routes(app)
    add_duplex_routes(app)
    add_translate_routes(app)
    return app
