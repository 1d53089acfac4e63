"""Fallback chains on real engines: a broken first choice is skipped, and taken back when healed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.app.runtime import Runtime
from orchestrator.config import load_config
from orchestrator.fleet.fallback import RoleChain
from tests.conftest import RuntimeFactory
from tests.helpers import hold_load


def _with_second_tts(tiny_config_file: Path, model: Path, make_runtime: RuntimeFactory) -> Runtime:
    tiny_config_file.write_text(
        tiny_config_file.read_text()
        + f'\n[engines.tts_first]\nrole = "tts"\nadapter = "piper"\nmodel = "{model}"\n'
    )
    return make_runtime(load_config(config_file=tiny_config_file, environ={}))


class Switches(list[tuple[str, str | None, str, str]]):
    async def __call__(self, role: str, source: str | None, target: str, why: str) -> None:
        self.append((role, source, target, why))


async def test_a_permanent_failure_is_skipped_and_not_probed_again(
    tiny_config_file: Path, tiny_piper_onnx: Path, make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    """Broken weights are a permanent failure: probing would only reload them in vain, so the
    chain keeps the next engine until the session ends; the next session's chain tries again."""
    broken = tmp_path / "voice.onnx"
    broken.write_bytes(b"not a voice")
    broken.with_name("voice.onnx.json").write_text(
        tiny_piper_onnx.with_name(tiny_piper_onnx.name + ".json").read_text()
    )
    runtime = _with_second_tts(tiny_config_file, broken, make_runtime)
    switches = Switches()
    chain = RoleChain("tts", ["tts_first", "tts"], runtime.fleet, timeout_s=30, on_switch=switches)
    await chain.open()
    assert chain.current == "tts"
    assert "load failed" in chain.failed["tts_first"]
    assert chain.permanent == {"tts_first"}
    assert switches[0][:3] == ("tts", "tts_first", "tts")

    broken.write_bytes(tiny_piper_onnx.read_bytes())  # repaired meanwhile
    await chain.probe()  # a permanent failure is not retried
    assert chain.current == "tts" and len(switches) == 1
    assert runtime.fleet.engine("tts_first").state.value != "loaded"

    nxt = RoleChain("tts", ["tts_first", "tts"], runtime.fleet, timeout_s=30, on_switch=switches)
    await nxt.open()  # the next session starts from the top and gets the repaired engine
    assert nxt.current == "tts_first" and nxt.failed == {}
    await nxt.close()

    await chain.close()
    assert all(s.leases == 0 for s in await runtime.fleet.statuses())


async def test_a_transient_failure_is_probed_until_the_engine_comes_back(
    tiny_config_file: Path, tiny_piper_onnx: Path, make_runtime: RuntimeFactory, monkeypatch: Any
) -> None:
    """An engine still loading when the chain needed it (WakeTimeout, transient) is probed
    again, and the chain switches back once it is up; the load is held on an event, so the
    outcome does not depend on this machine's speed."""
    runtime = _with_second_tts(tiny_config_file, tiny_piper_onnx, make_runtime)
    engine = runtime.fleet.engine("tts_first")
    release = hold_load(engine, monkeypatch)
    switches = Switches()
    chain = RoleChain(
        "tts", ["tts_first", "tts"], runtime.fleet, timeout_s=0.05, on_switch=switches
    )
    await runtime.fleet.load("tts")  # the fallback is up: only tts_first can time out
    await chain.open()
    assert chain.current == "tts" and "still loading" in chain.failed["tts_first"]
    assert chain.permanent == set()

    await chain.probe()  # still held: it times out again, nothing changes
    assert chain.current == "tts" and len(switches) == 1

    release.set()
    await runtime.fleet.load("tts_first")
    await chain.probe()
    assert chain.current == "tts_first"
    assert switches[-1] == ("tts", "tts", "tts_first", "recovered")
    assert chain.failed == {}
    assert (await runtime.fleet.status("tts_first")).leases == 1

    assert await chain.fail("synthesis failed")  # and away again on a call error
    assert chain.current == "tts"
    await chain.close()
    assert all(s.leases == 0 for s in await runtime.fleet.statuses())


async def test_a_silent_engine_fails_the_reply_by_name(
    cascade_config_file: Path, make_runtime: RuntimeFactory
) -> None:
    import pytest

    from orchestrator.voice.cascade import reply
    from services.errors import EngineCallError

    runtime = make_runtime(load_config(config_file=cascade_config_file, environ={}))
    await runtime.fleet.load("llm")
    await runtime.fleet.load("tts")
    llm, tts = runtime.fleet.engine("llm"), runtime.fleet.engine("tts")
    messages = [{"role": "user", "content": "Hello"}]
    with pytest.raises(EngineCallError, match="no output for") as caught:
        async for _piece in reply(llm, tts, messages, stall_timeout_s=1e-6):  # type: ignore[arg-type]
            pass
    assert caught.value.engine == "llm"  # the fallback chain knows whom to replace
    pieces = [p async for p in reply(llm, tts, messages, stall_timeout_s=30)]  # type: ignore[arg-type]
    assert any(p.audio for p in pieces)
