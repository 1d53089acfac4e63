"""Parking in the console: the Park action, the engines page, and park_roles in the settings."""

from __future__ import annotations

import tomllib

import pytest

from console.context import CONSOLE
from console.overrides import FILE_NAME
from orchestrator.app.runtime import Runtime
from orchestrator.config import HibernationConfig
from orchestrator.core.idle import IdleState
from services.base import Engine, Role
from tests.console.conftest import Client
from tests.fakes import FakeEngine, ParkingFakeEngine


@pytest.fixture
def engines() -> dict[str, Engine]:
    return {"asr": ParkingFakeEngine("asr", Role.ASR), "tts": FakeEngine("tts", Role.TTS)}


async def test_park_action_parks_or_unloads_instead_and_the_page_shows_it(
    client: Client, csrf: dict[str, str], runtime: Runtime
) -> None:
    for name in ("asr", "tts"):
        await runtime.fleet.load(name)
    parked = await client.post("/api/engines/asr/park", json={}, headers=csrf)
    assert (await parked.json())["state"] == "parked"
    instead = await client.post("/api/engines/tts/park", json={}, headers=csrf)
    assert (await instead.json())["state"] == "unloaded"
    audit = client.app[CONSOLE].audit.recent(limit=2)
    assert [(e.action, e.target, e.ok) for e in audit] == [
        ("park", "tts", True),
        ("park", "asr", True),
    ]
    assert audit[0].details is not None
    assert audit[0].details["unloaded_instead"].startswith("cannot park")
    assert audit[1].details is not None
    assert audit[1].details["ram_kept_bytes"] == ParkingFakeEngine.KEPT
    again = await client.post("/api/engines/asr/park", json={}, headers=csrf)
    assert again.status == 409  # already parked: nothing to do

    html = await (await client.get("/engines")).text()
    assert 'data-engine="asr" data-state="parked"' in html
    assert '<span class="badge engine-parked">parked</span>' in html
    assert "parked in RAM:" in html

    loaded = await client.post("/api/engines/asr/load", json={}, headers=csrf)
    assert (await loaded.json())["state"] == "loaded"  # a resume
    engine = runtime.fleet.engine("asr")
    assert isinstance(engine, ParkingFakeEngine) and engine.resumes == 1


async def test_park_roles_are_edited_and_saved_for_restart(
    client: Client, csrf: dict[str, str], runtime: Runtime
) -> None:
    page = await (await client.get("/hibernation")).text()
    assert 'name="park_roles" value="tts" checked' in page  # COOL parks TTS by default
    changes = {"actions": {"cool": {"park_roles": ["asr", "tts"], "unload_roles": []}}}
    saved = await client.post("/api/hibernation/settings", json=changes, headers=csrf)
    assert saved.status == 200, await saved.text()
    path = runtime.config.state.dir / FILE_NAME
    settings = HibernationConfig.model_validate(tomllib.loads(path.read_text())["hibernation"])
    assert [str(r) for r in settings.actions[IdleState.COOL].park_roles] == ["asr", "tts"]
    overview = await (await client.get("/hibernation")).text()
    assert "park tts, duplex" in overview  # the running ladder's COOL, as the ladder shows it
