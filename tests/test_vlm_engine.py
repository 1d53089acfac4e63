"""The in-process VLM adapter on a tiny random LLaVA built offline: load, answer about images,
park, unload, through the real loading code (``AutoProcessor``, ``AutoModelForImageTextToText``).
"""

from __future__ import annotations

from contextlib import aclosing
from pathlib import Path

import pytest

from orchestrator.config.models import EngineConfig
from services.base import ChatUsage, EngineSpec, EngineState, Role
from services.errors import EngineCallError, EngineNotLoaded
from services.registry import create_engine
from services.transformers_vlm import TransformersVision
from services.vision import Image, VisionModel
from tests.vision_helpers import image_bytes


def photo(width: int = 64, height: int = 48) -> Image:
    return Image(image_bytes(width, height), "png", width, height)


@pytest.fixture
async def vlm(tiny_vlm_dir: Path, tmp_path: Path) -> TransformersVision:
    spec = EngineSpec("vlm", Role.VLM, str(tiny_vlm_dir), tmp_path, options={"max_new_tokens": 6})
    engine = create_engine("transformers", spec)
    assert isinstance(engine, TransformersVision)
    yield engine
    await engine.unload()


async def reply(engine: VisionModel, messages: list[dict[str, object]]) -> list[str]:
    async with aclosing(engine.chat(messages)) as deltas:
        return [d async for d in deltas]


async def test_it_answers_about_an_image(vlm: TransformersVision) -> None:
    assert isinstance(vlm, VisionModel) and vlm.role is Role.VLM
    with pytest.raises(EngineNotLoaded):
        await reply(vlm, [{"role": "user", "content": "hi"}])
    report = await vlm.load()
    assert vlm.state is EngineState.LOADED and report.seconds > 0
    usage = ChatUsage()
    messages = [
        {"role": "system", "content": "You are a tutor."},
        {"role": "user", "content": "What is on the page?", "images": [photo(), photo(20, 90)]},
    ]
    async with aclosing(vlm.chat(messages, usage=usage)) as deltas:
        text = "".join([d async for d in deltas])
    assert text  # noise, but a reply
    assert 0 < usage.completion_tokens <= 6
    # each image is its 16 patches (32 x 32 pixels in 8 x 8 patches) in the prompt
    plain = ChatUsage()
    async with aclosing(vlm.chat([messages[0], {**messages[1], "images": []}], usage=plain)) as d:
        assert [x async for x in d]
    assert usage.prompt_tokens == plain.prompt_tokens + 2 * 16


async def test_a_broken_image_is_an_engine_call_error(vlm: TransformersVision) -> None:
    await vlm.load()
    broken = Image(b"not an image at all", "png", 1, 1)
    with pytest.raises(EngineCallError, match="could not build the prompt"):
        await reply(vlm, [{"role": "user", "content": "look", "images": [broken]}])


async def test_it_parks_and_resumes_without_reading_files(vlm: TransformersVision) -> None:
    await vlm.load()
    parked = await vlm.park()
    assert vlm.state is EngineState.PARKED and parked.ram_kept_bytes >= 0
    resumed = await vlm.load()
    assert resumed.resumed and vlm.state is EngineState.LOADED
    assert await reply(vlm, [{"role": "user", "content": "again", "images": [photo()]}])
    await vlm.unload()
    assert vlm.state is EngineState.UNLOADED


async def test_a_missing_folder_is_missing(tmp_path: Path) -> None:
    spec = EngineSpec("vlm", Role.VLM, str(tmp_path / "nothing"), tmp_path)
    engine = create_engine("transformers", spec)
    health = await engine.health()
    assert health.state is EngineState.MISSING
    assert "config.json" in health.detail


def test_a_hub_model_downloads_the_processor_and_template_too(tmp_path: Path) -> None:
    engine = create_engine("transformers", EngineSpec("v", Role.VLM, "org/tiny-vlm", tmp_path))
    (artifact,) = engine.artifacts()
    assert "*.jinja" in artifact.allow_patterns and "*.json" in artifact.allow_patterns


@pytest.mark.parametrize("adapter", ["ollama", "transformers"])
def test_the_vlm_role_validates_for_its_adapters(adapter: str) -> None:
    config = EngineConfig.model_validate({"role": "vlm", "adapter": adapter, "model": "m"})
    assert config.role is Role.VLM


def test_another_adapter_names_its_roles() -> None:
    with pytest.raises(ValueError, match="adapter 'transformers' serves role llm and vlm, not tts"):
        EngineConfig.model_validate({"role": "tts", "adapter": "transformers", "model": "m"})
    with pytest.raises(ValueError, match="adapter 'piper' serves role tts, not vlm"):
        EngineConfig.model_validate({"role": "vlm", "adapter": "piper", "model": "m"})
