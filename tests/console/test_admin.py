"""The console's admin API: each operator action changes real state and leaves an audit entry."""

from __future__ import annotations

import json
import tomllib

from console.context import CONSOLE
from console.overrides import FILE_NAME
from orchestrator.app.runtime import Runtime
from orchestrator.commands.console_client import describe
from orchestrator.config import HibernationConfig
from orchestrator.core.idle import IdleState
from tests.console.conftest import Client


def audit_actions(client: Client) -> list[tuple[str, str, bool]]:
    return [(e.action, e.target, e.ok) for e in client.app[CONSOLE].audit.recent()]


async def test_hibernate_and_wake(client: Client, csrf: dict[str, str], runtime: Runtime) -> None:
    with runtime.bus.subscribe() as events:
        response = await client.post(
            "/api/hibernation/hibernate", json={"state": "cold"}, headers=csrf
        )
        assert response.status == 200
        assert (await response.json())["state"] == "cold"
        published = [events.queue.get_nowait() for _ in range(events.queue.qsize())]
    assert [e.type for e in published] == ["hibernation.transition", "audit"]
    assert published[1].data["action"] == "hibernate"
    assert runtime.hibernator.state is IdleState.COLD

    response = await client.post("/api/hibernation/wake", json={}, headers=csrf)
    assert (await response.json())["state"] == "active"
    history = await (await client.get("/api/transitions")).json()
    assert [(t["source"], t["target"]) for t in history] == [("active", "cold"), ("cold", "active")]
    assert audit_actions(client)[:2] == [("wake", "", True), ("hibernate", "cold", True)]


async def test_bad_requests_get_clear_errors_and_are_audited(
    client: Client, csrf: dict[str, str]
) -> None:
    bad_state = await client.post(
        "/api/hibernation/hibernate", json={"state": "asleep"}, headers=csrf
    )
    assert bad_state.status == 400
    assert "state must be one of" in (await bad_state.json())["error"]
    bad_minutes = await client.post(
        "/api/hibernation/keep-awake", json={"minutes": -5}, headers=csrf
    )
    assert bad_minutes.status == 400
    not_json = await client.post(
        "/api/hibernation/keep-awake",
        data=b"{oops",
        headers={**csrf, "Content-Type": "application/json"},
    )
    assert not_json.status == 400
    unknown = await client.post("/api/engines/llm/load", json={}, headers=csrf)
    assert unknown.status == 404
    action = await client.post("/api/engines/asr/explode", json={}, headers=csrf)
    assert action.status == 404
    already = await client.post("/api/engines/asr/unload", json={}, headers=csrf)
    assert already.status == 409
    refused = [(a, ok) for a, _, ok in audit_actions(client) if not ok]
    assert [action for action, _ in refused] == ["unload", "load", "keep_awake", "hibernate"]


async def test_keep_awake_pin_load_unload(
    client: Client, csrf: dict[str, str], runtime: Runtime
) -> None:
    response = await client.post("/api/hibernation/keep-awake", json={"minutes": 60}, headers=csrf)
    assert (await response.json())["keep_awake_until"] == runtime.clock() + 3600

    pinned = await client.post("/api/engines/tts/pin", json={"pinned": True}, headers=csrf)
    assert (await pinned.json())["pinned"] is True
    assert runtime.store.get("pins") == ["tts"]

    loaded = await client.post("/api/engines/tts/load", json={}, headers=csrf)
    assert (await loaded.json())["state"] == "loaded"
    await runtime.hibernator.force(IdleState.COLD)
    assert runtime.fleet.engine("tts").state.value == "loaded"  # the pin held

    unloaded = await client.post("/api/engines/tts/unload", json={}, headers=csrf)
    assert (await unloaded.json())["state"] == "unloaded"  # an operator's unload overrides it

    state = await (await client.get("/api/state")).json()
    assert state["engines"]["tts"] == {"state": "unloaded", "pinned": True}
    assert [a for a, _, _ in audit_actions(client)][:4] == ["unload", "load", "pin", "keep_awake"]
    unload = client.app[CONSOLE].audit.recent(limit=1)[0]
    assert unload.details is not None and unload.details["ram_freed_bytes"] == 1000


async def test_hibernation_settings_are_validated_and_saved_for_restart(
    client: Client, csrf: dict[str, str], runtime: Runtime
) -> None:
    path = runtime.config.state.dir / FILE_NAME
    bad = await client.post(
        "/api/hibernation/settings",
        json={"warm_after_s": 900, "actions": {"cool": {"unload_roles": ["gpu"]}}},
        headers=csrf,
    )
    assert bad.status == 400
    problems = (await bad.json())["problems"]
    assert any(p.startswith("hibernation.actions.cool.unload_roles.0") for p in problems)
    unknown = await client.post("/api/hibernation/settings", json={"nap_s": 3}, headers=csrf)
    assert (await unknown.json())["problems"] == ["hibernation.nap_s: unknown setting"]
    assert not path.exists()

    changes = {"warm_after_s": 60, "actions": {"cool": {"unload_roles": ["tts"]}}}
    good = await client.post("/api/hibernation/settings", json=changes, headers=csrf)
    assert good.status == 200
    body = await good.json()
    assert body["restart"] == f"python -m orchestrator serve --config {path}"
    saved = HibernationConfig.model_validate(tomllib.loads(path.read_text())["hibernation"])
    assert saved.warm_after_s == 60
    assert [str(r) for r in saved.actions[IdleState.COOL].unload_roles] == ["tts"]
    assert saved.cold_after_s == runtime.config.hibernation.cold_after_s
    assert runtime.hibernator.ladder.thresholds.warm == 30  # the running ladder is unchanged
    entry = client.app[CONSOLE].audit.recent(limit=1)[0]
    assert (entry.action, entry.ok) == ("hibernation_settings", True)
    page = await (await client.get("/hibernation")).text()
    assert "Saved settings wait for a restart" in page


async def test_the_simulator_runs_on_an_uploaded_trace(
    client: Client, csrf: dict[str, str]
) -> None:
    day = 86400
    lines = ["start,end"] + [f"{d * day + 9 * 3600},{d * day + 10 * 3600}" for d in range(7)]
    response = await client.post(
        "/api/simulate",
        json={"trace": "\n".join(lines), "filename": "week.csv", "timeouts": "15"},
        headers=csrf,
    )
    assert response.status == 200, await response.text()
    report = await response.json()
    assert report["file"] == "week.csv"
    assert report["trace"]["sessions"] == 7
    policies = [p["policy"] for p in report["policies"]]
    today = [p for p in policies if not p.startswith("gateway")]
    assert today[0] == "always on" and today[-1] == "fixed timeout 15 min"
    assert policies[-1] == "gateway learned pre-warm + bridge"  # the gateway's follow today's
    always_on = report["policies"][0]
    assert always_on["billed_hours"] == always_on["always_on_hours"]

    broken = await client.post(
        "/api/simulate",
        json={"trace": "start,end\n5,oops\n", "filename": "bad.csv"},
        headers=csrf,
    )
    assert broken.status == 400
    assert (await broken.json())["error"].startswith("bad.csv line 2: end")
    actions = audit_actions(client)[:2]
    assert actions == [("simulate", "", False), ("simulate", "week.csv", True)]


async def test_audit_entries_are_served_newest_first(client: Client, csrf: dict[str, str]) -> None:
    await client.post("/api/engines/asr/pin", json={"pinned": True}, headers=csrf)
    entries = await (await client.get("/api/audit?limit=5")).json()
    assert [e["action"] for e in entries] == ["pin", "login"]
    assert entries[0]["target"] == "asr"
    assert entries[0]["via"] == "session"
    assert json.dumps(entries)  # plain JSON all through


async def test_restart_unloads_and_loads_again_unless_in_use(
    client: Client, csrf: dict[str, str], runtime: Runtime
) -> None:
    engine = runtime.fleet.engine("tts")
    cold = await client.post("/api/engines/tts/restart", json={}, headers=csrf)
    assert cold.status == 200 and (await cold.json())["state"] == "loaded"  # was not loaded
    assert (engine.loads, engine.unloads) == (1, 0)  # type: ignore[attr-defined]

    runtime.pin("tts", True)  # an operator's restart goes through a pin, as an unload does
    warm = await client.post("/api/engines/tts/restart", json={}, headers=csrf)
    assert (await warm.json())["state"] == "loaded"
    assert (engine.loads, engine.unloads) == (2, 1)  # type: ignore[attr-defined]

    async with runtime.fleet.lease(["tts"]):  # a request is using it
        busy = await client.post("/api/engines/tts/restart", json={}, headers=csrf)
    assert busy.status == 409
    assert "in use by 1 request" in (await busy.json())["error"]
    assert engine.state.value == "loaded"
    restarts = [(target, ok) for action, target, ok in audit_actions(client) if action == "restart"]
    assert restarts == [("tts", False), ("tts", True), ("tts", True)]
    entry = client.app[CONSOLE].audit.recent()[1]
    assert entry.details == {"unloaded": True, "seconds": 0.01}


async def test_hibernate_says_what_stayed_loaded_and_why(
    client: Client, csrf: dict[str, str], runtime: Runtime
) -> None:
    await runtime.fleet.load("tts")
    await runtime.fleet.load("asr")
    await client.post("/api/engines/tts/pin", json={"pinned": True}, headers=csrf)
    response = await client.post("/api/hibernation/hibernate", json={"state": "cold"}, headers=csrf)
    body = await response.json()
    assert body["pinned"] == ["tts"]
    assert {"engine": "tts", "role": "tts", "why": "pinned"} in body["stayed_loaded"]
    assert all(e["engine"] != "asr" for e in body["stayed_loaded"])  # cold unloaded it
    text = describe(body)
    assert "pinned (never unloaded when idle): tts" in text
    assert "still loaded: tts (tts): pinned" in text


def test_describe_says_until_when_the_server_is_kept_awake() -> None:
    summary = {"state": "active", "idle_s": 3.0, "keep_awake_until": 1_800_000_000.0}
    assert (
        describe(summary)
        == "hibernation active, idle 3.0 s, kept awake until 2027-01-15 08:00:00 UTC"
    )
