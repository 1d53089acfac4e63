"""The voice API on Ray Serve, on a local Ray cluster on the CPU: two replicas of the tiny-engine
runtime behind the ingress (``orchestrator/scale``), reached over REST and both WebSockets
(``/v1/realtime``, and ``/v1/duplex`` in PersonaPlex's binary protocol, served by the cascade).

One cluster for the module (Ray starts in seconds, the replicas load torch); each test
redeploys the replica options it needs. Which replica holds a session is asked of the replica
actors themselves (their routing stats list their open sessions), never guessed.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import sphn

from tests.conftest import API_KEY, cascade_toml, free_port
from tests.realtime_client import Socket
from tests.scale.cluster import LocalCluster, scale_toml, until

pytestmark = pytest.mark.ray

CAP = 4  # sessions per replica
AUTH = {"Authorization": f"Bearer {API_KEY}"}
DUPLEX = "/v1/duplex?text_prompt=You%20are%20a%20kind%20tutor.&voice_prompt=NATF2.pt"
RATE, FRAME = 24_000, 1920  # PersonaPlex's Ogg Opus: 24 kHz, 80 ms a frame
KEYED = "openai-insecure-api-key."  # a browser's key, as a subprotocol


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_whisper_dir: Path,
    tiny_piper_onnx: Path,
    tiny_llm_dir: Path,
) -> Iterator[LocalCluster]:
    tmp = tmp_path_factory.mktemp("ray")
    text = cascade_toml(tiny_whisper_dir, tiny_piper_onnx, tiny_llm_dir, tmp)
    text += scale_toml(free_port(), replicas=2, sessions_per_replica=CAP, max_queued_sessions=1)
    path = tmp / "scale.toml"
    path.write_text(text)
    with LocalCluster(path, API_KEY).running() as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def open_socket(http: aiohttp.ClientSession, cluster: LocalCluster) -> Socket:
    ws = await http.ws_connect(
        f"{cluster.url}/v1/realtime", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    return Socket(ws)


async def opened(http: aiohttp.ClientSession, cluster: LocalCluster) -> tuple[Socket, str]:
    """A Realtime session, and its id (``session.created``)."""
    socket = await open_socket(http, cluster)
    created = await socket.until("session.created", timeout=180)
    return socket, created["session"]["id"]


async def first_answer(socket: Socket) -> dict[str, Any]:
    """The first ``session.created`` or ``error`` the socket gets."""
    async with asyncio.timeout(300):
        while True:
            message = await socket.ws.receive()
            assert message.type is aiohttp.WSMsgType.TEXT, message
            event: dict[str, Any] = json.loads(message.data)
            if event["type"] in ("session.created", "error"):
                return event


async def duplex_socket(
    http: aiohttp.ClientSession, cluster: LocalCluster, **auth: Any
) -> aiohttp.ClientWebSocketResponse:
    """A PersonaPlex client's socket, past the server's handshake (``0x00``, the first and
    only thing before the audio); the key in the header unless ``auth`` says otherwise."""
    ws = await http.ws_connect(cluster.url + DUPLEX, **(auth or {"headers": AUTH}))
    first = await ws.receive(timeout=300)
    assert first.type is aiohttp.WSMsgType.BINARY and first.data == b"\x00", first
    return ws


async def duplex_exchange(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> tuple[int, int]:
    """Stream ``seconds`` of audio as PersonaPlex's clients do (one Ogg Opus page per 80 ms
    frame, kind ``0x01``; silence, so the cascade has nothing to answer but its own frames)
    and read each page's answer: one audio message, text maybe before it. The samples heard
    back, decoded from the server's one Ogg stream, and the frames sent."""
    writer, reader = sphn.OpusStreamWriter(RATE), sphn.OpusStreamReader(RATE)
    sent = heard = 0
    for _ in range(round(seconds * RATE / FRAME)):
        encoded = writer.append_pcm(np.zeros(FRAME, dtype=np.float32))
        if not encoded:
            continue
        await ws.send_bytes(b"\x01" + encoded)
        sent += 1
        while True:
            message = await ws.receive(timeout=60)
            assert message.type is aiohttp.WSMsgType.BINARY, message
            if message.data[0] == 0x01:
                break
            assert message.data[0] == 0x02, message.data[:1]  # text: the reply's words
        pcm = reader.append_bytes(message.data[1:])
        heard += 0 if pcm is None else len(pcm)
    return heard, sent


async def a_text_turn(socket: Socket) -> None:
    await socket.say("Hello")
    await socket.send("response.create")
    await socket.until("response.audio.delta", timeout=180)
    done = await socket.until("response.done", timeout=180)
    assert done["response"]["status"] == "completed"


async def test_eight_sessions_spread_over_two_replicas_and_stay(
    cluster: LocalCluster, http: aiohttp.ClientSession
) -> None:
    await asyncio.to_thread(cluster.deploy, num_replicas=2, max_queued_requests=-1)
    opened_ = await asyncio.gather(*(opened(http, cluster) for _ in range(8)))
    ids = [session for _, session in opened_]
    where = await asyncio.to_thread(cluster.where)
    assert sorted(where) == sorted(ids)  # every session is on exactly one replica
    assert sorted(Counter(where.values()).values()) == [CAP, CAP]  # both replicas, 4 each
    # one session on each replica speaks a whole turn; afterwards all are where they were
    first_on = {replica: session for session, replica in where.items()}
    sockets = dict(zip(ids, (s for s, _ in opened_), strict=True))
    await asyncio.gather(*(a_text_turn(sockets[s]) for s in first_on.values()))
    assert await asyncio.to_thread(cluster.where) == where
    for socket, _ in opened_:
        await socket.ws.close()
    await until(lambda: not cluster.where(), what="the sessions to end on the replicas")


async def test_a_duplex_session_is_relayed_to_one_replica_and_ends_there(
    cluster: LocalCluster, http: aiohttp.ClientSession
) -> None:
    """PersonaPlex's binary protocol through the ingress: the handshake, 2 s of Ogg Opus in
    and one frame out for each, on one replica for the session's life; its close gives the
    replica its place back."""
    await asyncio.to_thread(cluster.deploy, num_replicas=2, max_queued_requests=-1)
    ws = await duplex_socket(http, cluster)
    where = await asyncio.to_thread(cluster.where)
    ((_, replica),) = where.items()  # one session, on one replica
    heard, sent = await duplex_exchange(ws, 2.0)
    assert sent >= 24 and heard == sent * FRAME  # 80 ms out for every 80 ms in
    assert await asyncio.to_thread(cluster.where) == where
    assert (await asyncio.to_thread(cluster.stats))[replica]["places"] == 1
    await ws.close()
    assert ws.close_code == 1000

    def freed() -> bool:
        stats = cluster.stats()[replica]
        return not stats["sessions"] and stats["places"] == 0

    await until(freed, what="the duplex session to end on its replica")


async def test_a_full_deployment_queues_one_session_and_refuses_the_next(
    cluster: LocalCluster, http: aiohttp.ClientSession
) -> None:
    """4 per replica, 2 replicas, ``max_queued_sessions = 1``: of two extra sessions one waits
    for a place and gets it when a session ends, the other is refused at once."""
    await asyncio.to_thread(cluster.deploy, num_replicas=2)
    # one at a time: a burst waits for its places together, and a queue of 1 refuses it
    full = [await opened(http, cluster) for _ in range(2 * CAP)]
    extra = [await open_socket(http, cluster) for _ in range(2)]
    answers = [asyncio.ensure_future(first_answer(s)) for s in extra]
    done, _ = await asyncio.wait(answers, return_when=asyncio.FIRST_COMPLETED)
    (error,) = (task.result() for task in done)
    assert error["type"] == "error"
    assert error["error"]["code"] == "sessions_full"
    refused = extra[answers.index(next(iter(done)))]
    held = extra[1 - extra.index(refused)]
    assert (await refused.ws.receive()).type is aiohttp.WSMsgType.CLOSE
    assert refused.ws.close_code == 1013
    stats = await asyncio.to_thread(cluster.stats)
    assert all(len(s["sessions"]) == CAP for s in stats.values())  # the cap holds
    ended_socket, ended = full[0]
    freed = (await asyncio.to_thread(cluster.where))[ended]
    await ended_socket.ws.close()
    answer = await answers[extra.index(held)]
    assert answer["type"] == "session.created"  # its place came when a session ended
    assert (await asyncio.to_thread(cluster.where))[answer["session"]["id"]] == freed
    for socket in (held, *(s for s, _ in full[1:])):
        await socket.ws.close()
    await until(lambda: not cluster.where(), what="the sessions to end on the replicas")


async def test_a_draining_replica_finishes_its_session_and_takes_no_new_one(
    cluster: LocalCluster, http: aiohttp.ClientSession
) -> None:
    await asyncio.to_thread(cluster.deploy, num_replicas=2, max_queued_requests=-1)
    (a, a_id), (b, b_id) = [await opened(http, cluster) for _ in range(2)]
    where = await asyncio.to_thread(cluster.where)
    assert where[a_id] != where[b_id]  # the second went to the replica with room to spare
    with cluster.deploying(num_replicas=1, max_queued_requests=-1):
        (draining,) = await until(lambda: cluster.in_state("STOPPING"), what="a drain")
        staying = next(r for r in where.values() if r != draining)
        socket = a if where[a_id] == draining else b
        await a_text_turn(socket)  # the draining replica still answers its session
        newcomer, new_id = await opened(http, cluster)
        assert (await asyncio.to_thread(cluster.where))[new_id] == staying
        assert draining in await asyncio.to_thread(cluster.in_state, "STOPPING")
        await socket.ws.close()  # its last session ends: now it stops
        await until(
            lambda: draining not in {r["replica_id"] for r in cluster.replicas()},
            what="the drained replica to stop",
        )
    assert await asyncio.to_thread(cluster.in_state, "RUNNING") == [staying]
    assert (await asyncio.to_thread(cluster.where))[new_id] == staying
    for other in (a, b, newcomer):
        await other.ws.close()
    await until(lambda: not cluster.where(), what="the sessions to end on the replicas")


async def test_from_zero_replicas_the_first_session_is_told_waking_and_answered(
    cluster: LocalCluster, http: aiohttp.ClientSession
) -> None:
    autoscaling = {
        "min_replicas": 0,
        "initial_replicas": 0,
        "max_replicas": 2,
        "target_ongoing_requests": CAP,
        "upscale_delay_s": 0,
        "downscale_delay_s": 600,
    }
    await asyncio.to_thread(cluster.deploy, autoscaling_config=autoscaling, max_queued_requests=-1)
    await until(lambda: not cluster.replicas(), what="zero replicas")
    socket = await open_socket(http, cluster)
    first = json.loads((await socket.ws.receive()).data)
    assert first["type"] == "waking"
    assert first["engines"] == ["replica"]
    # a duplex client now is held too, told nothing (its protocol has no such message):
    # the first thing it gets is the replica's handshake
    duplex = asyncio.ensure_future(duplex_socket(http, cluster))
    created = await socket.until("session.created", timeout=300)
    ws = await duplex
    (running,) = cluster.in_state("RUNNING")
    where = await asyncio.to_thread(cluster.where)
    assert where.pop(created["session"]["id"]) == running
    assert list(where.values()) == [running]  # the duplex session, on the same replica
    heard, sent = await duplex_exchange(ws, 0.4)
    assert sent and heard == sent * FRAME
    await ws.close()
    response = await http.get(
        f"{cluster.url}/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert response.status == 200
    assert response.headers["X-Voice-Replica"] == cluster.in_state("RUNNING")[0]
    await socket.ws.close()


async def test_the_ingress_checks_the_key_before_it_places_anything(
    cluster: LocalCluster, http: aiohttp.ClientSession
) -> None:
    response = await http.get(f"{cluster.url}/v1/models")
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "invalid_api_key"
    live = await http.get(f"{cluster.url}/health/live")
    assert live.status == 200
    assert "X-Voice-Replica" not in live.headers  # answered by the ingress itself
    # a WebSocket's key, in the header or (a browser's way) the subprotocol, is checked here
    # too, and a missing or wrong one refused before the upgrade as the replica refuses it
    for path, wrong in (
        ("/v1/realtime", {}),
        (DUPLEX, {"headers": {"Authorization": "Bearer nope"}}),
        (DUPLEX, {"protocols": [f"{KEYED}nope"]}),
    ):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(cluster.url + path, **wrong)
        assert refused.value.status == 401, path
        assert refused.value.headers is not None
        assert refused.value.headers["WWW-Authenticate"] == "Bearer"
    ws = await duplex_socket(http, cluster, protocols=[KEYED + API_KEY])
    await ws.close()
    # a LibreTranslate client sends its key in the body: checked there, in its words
    body = {"q": "Hallo", "source": "de", "target": "en"}
    wrong = await http.post(f"{cluster.url}/translate", json={**body, "api_key": "nope"})
    assert (wrong.status, await wrong.json()) == (403, {"error": "Invalid API key"})
    assert "X-Voice-Replica" not in wrong.headers
    none = await http.post(f"{cluster.url}/translate", data=body)
    assert none.status == 400 and "X-Voice-Replica" not in none.headers
    right = await http.post(f"{cluster.url}/translate", data={**body, "api_key": API_KEY})
    assert right.status != 403 and "X-Voice-Replica" in right.headers  # on to a replica


async def test_a_duplex_client_without_a_persona_is_refused_before_the_upgrade(
    cluster: LocalCluster, http: aiohttp.ClientSession
) -> None:
    """The replica's own 400, said by the ingress before it places (and at zero, before it
    wakes a replica for a request that would be refused)."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(f"{cluster.url}/v1/duplex?voice_prompt=NATF2.pt", headers=AUTH)
    assert refused.value.status == 400


@pytest.mark.parametrize(
    ("status", "code", "close"),
    [
        (400, "bad_request", 1008),
        (429, "too_many_requests", 1008),
        (503, "service_unavailable", 1013),
        (401, "replica_key_rejected", 1011),
        (500, "replica_refused", 1011),
    ],
)
def test_a_refusal_from_the_replica_after_the_accept_maps_to_a_close(
    status: int, code: str, close: int
) -> None:
    from orchestrator.scale.ingress import _refusal

    error, close_code = _refusal(status)
    assert (error.code, close_code) == (code, close)
    assert error.message.startswith(f"the replica refused the session: {status} ")
