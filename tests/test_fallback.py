"""Fallback chains on real engines: a broken first choice is skipped, and taken back when healed."""

from __future__ import annotations

from pathlib import Path

from orchestrator.config import load_config
from orchestrator.fleet.fallback import RoleChain
from tests.conftest import RuntimeFactory


async def test_switch_away_and_back(
    tiny_config_file: Path, tiny_piper_onnx: Path, make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    broken = tmp_path / "voice.onnx"
    broken.write_bytes(b"not a voice")
    broken.with_name("voice.onnx.json").write_text(
        tiny_piper_onnx.with_name(tiny_piper_onnx.name + ".json").read_text()
    )
    tiny_config_file.write_text(
        tiny_config_file.read_text()
        + f'\n[engines.tts_first]\nrole = "tts"\nadapter = "piper"\nmodel = "{broken}"\n'
    )
    runtime = make_runtime(load_config(config_file=tiny_config_file, environ={}))
    switches: list[tuple[str, str | None, str, str]] = []

    async def on_switch(role: str, source: str | None, target: str, why: str) -> None:
        switches.append((role, source, target, why))

    chain = RoleChain("tts", ["tts_first", "tts"], runtime.fleet, timeout_s=30, on_switch=on_switch)
    await chain.open()
    assert chain.current == "tts"
    assert "load failed" in chain.failed["tts_first"]
    assert switches[0][:3] == ("tts", "tts_first", "tts")

    await chain.probe()  # still broken: nothing changes
    assert chain.current == "tts" and len(switches) == 1

    broken.write_bytes(tiny_piper_onnx.read_bytes())  # repaired
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
