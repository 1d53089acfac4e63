"""The in-process transformers chat engine on a tiny random GPT-2 built offline."""

from __future__ import annotations

import threading
import weakref
from pathlib import Path

import pytest

from services.base import ChatModel, EngineSpec, EngineState, Role
from services.errors import EngineNotLoaded, InvalidInput, ModelMissing
from services.transformers_llm import TransformersChat

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]


@pytest.fixture
def llm(tiny_llm_dir: Path, tmp_path: Path) -> TransformersChat:
    options = {"max_new_tokens": 40, "min_new_tokens": 30, "temperature": 1.0}
    return TransformersChat(
        EngineSpec("llm", Role.LLM, str(tiny_llm_dir), tmp_path, options=options)
    )


async def test_load_stream_unload(llm: TransformersChat) -> None:
    assert isinstance(llm, ChatModel)
    await llm.load()
    deltas = [delta async for delta in llm.chat(MESSAGES)]
    assert len(deltas) > 1, "the reply streams in several pieces"
    assert all(isinstance(d, str) and d for d in deltas)
    model = weakref.ref(llm._model)
    await llm.unload()
    assert model() is None
    with pytest.raises(EngineNotLoaded):
        [d async for d in llm.chat(MESSAGES)]


async def test_closing_the_stream_stops_generation(llm: TransformersChat) -> None:
    await llm.load()
    stream = llm.chat(MESSAGES, options={"max_new_tokens": 400, "min_new_tokens": 400})
    await anext(stream)
    assert "generate-llm" in [t.name for t in threading.enumerate()]
    await stream.aclose()  # sets the stop flag and joins the generation thread
    assert "generate-llm" not in [t.name for t in threading.enumerate()]
    assert llm.state is EngineState.LOADED
    await llm.unload()


async def test_errors(llm: TransformersChat, tmp_path: Path) -> None:
    await llm.load()
    with pytest.raises(InvalidInput):
        [d async for d in llm.chat([])]
    await llm.unload()
    missing = TransformersChat(EngineSpec("llm", Role.LLM, str(tmp_path / "none"), tmp_path))
    with pytest.raises(ModelMissing):
        await missing.load()


async def test_a_prompt_longer_than_the_context_keeps_its_latest_tokens(
    llm: TransformersChat,
) -> None:
    await llm.load()
    long = [{"role": "user", "content": "numbers and words " * 400}]  # far over 512 positions
    deltas = [delta async for delta in llm.chat(long)]
    assert deltas
    await llm.unload()
