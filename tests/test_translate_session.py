"""A Realtime session whose replies are spoken in another language: each sentence the LLM writes
is translated by the tiny NLLB-200 engine before TTS, and the transcript shows what is spoken.
The LLM is replaced by a fixed reply so the sentences are known; the translation is real."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from orchestrator.api.app import create_api_app
from orchestrator.app.runtime import Runtime
from orchestrator.config import ConfigError, load_config
from services.translation import Language, TextTranslator, Translation
from tests.conftest import RuntimeFactory, cascade_toml
from tests.realtime_client import Socket, connect
from tests.test_translate_api import translation_toml

REPLY = ["Hello there. ", "How are you today?"]


@pytest.fixture
async def runtime(
    make_runtime: RuntimeFactory,
    tmp_path: Path,
    tiny_whisper_dir: Path,
    tiny_piper_onnx: Path,
    tiny_llm_dir: Path,
    tiny_nllb_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Runtime:
    text = cascade_toml(tiny_whisper_dir, tiny_piper_onnx, tiny_llm_dir, tmp_path)
    text += translation_toml(tiny_nllb_dir)
    text += '\n[sessions]\nreply_language = "de"\n'
    path = tmp_path / "session.toml"
    path.write_text(text)
    runtime = make_runtime(load_config(config_file=path, environ={}), writer=True)

    async def fixed_chat(
        messages: list[dict[str, str]], *, options: dict[str, Any] | None = None
    ) -> AsyncGenerator[str, None]:
        for delta in REPLY:
            yield delta

    monkeypatch.setattr(runtime.fleet.engine("llm"), "chat", fixed_chat)
    return runtime


@pytest.fixture
def translated(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """Every sentence the engine translated: (source text, target language, translation)."""
    engine = runtime.fleet.engine("translation")
    real = engine.translate
    seen: list[tuple[str, str, str]] = []

    async def spy(texts: Sequence[str], **kw: Any) -> list[Translation]:
        done = await real(texts, **kw)
        seen.extend((t, kw["target"], d.text) for t, d in zip(texts, done, strict=True))
        return done

    monkeypatch.setattr(engine, "translate", spy)
    return seen


async def spoken_reply(socket: Socket) -> tuple[str, int]:
    """Ask for a reply; its transcript and the bytes of audio that came with it."""
    start = len(socket.seen)
    await socket.send("response.create")
    done = await socket.until("response.done")
    assert done["response"]["status"] == "completed", done
    events = socket.seen[start:]
    text = "".join(e["delta"] for e in events if e["type"] == "response.audio_transcript.delta")
    audio = sum(len(e["delta"]) for e in events if e["type"] == "response.audio.delta")
    return text.strip(), audio


async def test_replies_are_translated_before_speech_and_shown_as_spoken(
    runtime: Runtime, translated: list[tuple[str, str, str]], aiohttp_server: Any
) -> None:
    server: TestServer = await aiohttp_server(create_api_app(runtime))
    async with aiohttp.ClientSession() as http:
        socket = await connect(server, http)
        created = await socket.until("session.created")
        assert created["session"]["reply_language"] == "de"
        await socket.say("Hi")
        await socket.until("conversation.item.created")
        text, audio = await spoken_reply(socket)
        assert [(src, tgt) for src, tgt, _ in translated] == [
            ("Hello there.", "de"),
            ("How are you today?", "de"),
        ]
        assert text == " ".join(out for _, _, out in translated) and audio > 0
        assert text != "Hello there. How are you today?"

        # per session: French instead, then off (spoken as the LLM wrote it)
        await socket.send("session.update", session={"reply_language": "fr"})
        updated = await socket.until("session.updated")
        assert updated["session"]["reply_language"] == "fr"
        translated.clear()
        await spoken_reply(socket)
        assert {tgt for _, tgt, _ in translated} == {"fr"}
        await socket.send("session.update", session={"reply_language": ""})
        assert (await socket.until("session.updated"))["session"]["reply_language"] is None
        translated.clear()
        text, _ = await spoken_reply(socket)
        assert text == "Hello there. How are you today?" and translated == []
        await socket.ws.close()


async def test_a_language_no_model_knows_is_refused_when_it_is_set(
    runtime: Runtime, aiohttp_server: Any
) -> None:
    server: TestServer = await aiohttp_server(create_api_app(runtime))
    async with aiohttp.ClientSession() as http:
        socket = await connect(server, http)
        await socket.until("session.created")
        await socket.send("session.update", session={"reply_language": "tlh"})
        error = (await socket.until("error"))["error"]
        assert (error["code"], error["param"]) == (
            "unsupported_language",
            "session.reply_language",
        )
        assert "'tlh' is not a language code" in error["message"]
        await socket.send("session.update", session={"instructions": "Be brief."})
        assert (await socket.until("session.updated"))["session"]["reply_language"] == "de"
        await socket.ws.close()


async def test_a_language_the_loaded_engine_lacks_is_refused_when_it_is_set(
    runtime: Runtime, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = runtime.fleet.engine("translation")
    assert isinstance(engine, TextTranslator)
    # the tiny NLLB serves every FLORES code; a real pair model (Marian en-de) says less
    monkeypatch.setattr(engine, "languages", lambda: [Language("en", "English", ("de",))])
    server: TestServer = await aiohttp_server(create_api_app(runtime))
    async with aiohttp.ClientSession() as http:
        socket = await connect(server, http)
        await socket.until("session.created")
        await socket.send("session.update", session={"reply_language": "ja"})
        error = (await socket.until("error"))["error"]
        assert error["param"] == "session.reply_language"
        assert "does not translate en to ja" in error["message"]
        await socket.say("Hi")
        await socket.until("conversation.item.created")
        text, _ = await spoken_reply(socket)  # still in German
        assert text and text != "Hello there. How are you today?"
        await socket.ws.close()


def test_the_configured_reply_language_is_checked_at_start(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[sessions]\nreply_language = "klingon"\n')
    with pytest.raises(ConfigError, match=r"sessions\.reply_language.*'klingon' is not a language"):
        load_config(config_file=path, environ={})
