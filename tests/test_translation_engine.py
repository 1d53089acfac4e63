"""The ctranslate2 adapter on tiny random NLLB-200 and M2M-100 models, loaded through the real
registry and the real CTranslate2 and transformers code. Translations are noise: the tests look
at their structure (one per text, the lines kept, distinct alternatives), never their words."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.base import EngineSpec, EngineState, Role
from services.errors import EngineNotLoaded
from services.registry import create_engine
from services.translation import TextTranslator, UnsupportedLanguage

OPTIONS = {"max_decoding_length": 12, "beam_size": 2, "cpu_threads": 1}


def translator(folder: Path, tmp_path: Path, **options: object) -> TextTranslator:
    spec = EngineSpec(
        "translation",
        Role.TRANSLATION,
        str(folder),
        tmp_path,
        compute_type="int8",
        options={**OPTIONS, **options},
    )
    engine = create_engine("ctranslate2", spec)
    assert isinstance(engine, TextTranslator)
    return engine


@pytest.mark.parametrize("family", ["nllb", "m2m100"])
async def test_it_translates_text_line_by_line(
    family: str, tiny_nllb_dir: Path, tiny_m2m100_dir: Path, tmp_path: Path
) -> None:
    folder = tiny_nllb_dir if family == "nllb" else tiny_m2m100_dir
    engine = translator(folder, tmp_path)
    assert engine.state is EngineState.UNLOADED
    await engine.load()
    try:
        by_code = {lang.code: lang for lang in engine.languages()}
        assert {"en", "de", "fr", "zh-Hans"} <= set(by_code)
        assert by_code["en"].name == "English" and "de" in by_code["en"].targets
        assert "en" not in by_code["en"].targets
        texts = ["Hello there.\nHow are you today?", "", "  The cat.  "]
        results = await engine.translate(texts, source="en", target="de")
        assert len(results) == 3
        first, empty, padded = results
        assert first.text.count("\n") == 1 and all(line for line in first.text.split("\n"))
        assert empty.text == "" and first.alternatives == ()
        assert padded.text.startswith("  ") and padded.text.endswith("  ")
        assert padded.text.strip()
    finally:
        await engine.unload()


async def test_alternatives_are_distinct_from_the_best(tiny_nllb_dir: Path, tmp_path: Path) -> None:
    engine = translator(tiny_nllb_dir, tmp_path)
    await engine.load()
    [result] = await engine.translate(
        ["Let us study numbers."], source="en", target="fr", alternatives=2
    )
    assert 1 <= len(result.alternatives) <= 2
    assert result.text not in result.alternatives
    assert len(set(result.alternatives)) == len(result.alternatives)
    await engine.unload()


async def test_languages_it_lacks_are_refused_by_name(tiny_nllb_dir: Path, tmp_path: Path) -> None:
    engine = translator(tiny_nllb_dir, tmp_path, languages=["en", "de"])
    await engine.load()
    assert sorted(lang.code for lang in engine.languages()) == ["de", "en"]
    with pytest.raises(UnsupportedLanguage, match="xx is not supported"):
        await engine.translate(["Hi"], source="xx", target="de")
    with pytest.raises(UnsupportedLanguage, match="fr is not supported"):
        await engine.translate(["Hi"], source="en", target="fr")
    with pytest.raises(UnsupportedLanguage, match="en is not available as a target from en"):
        await engine.translate(["Hi"], source="EN", target="en")
    await engine.unload()


async def test_it_parks_and_resumes_without_reading_files(
    tiny_nllb_dir: Path, tmp_path: Path
) -> None:
    engine = translator(tiny_nllb_dir, tmp_path)
    await engine.load()
    parked = await engine.park()  # type: ignore[attr-defined]
    assert engine.state is EngineState.PARKED and parked.ram_kept_bytes >= 0
    with pytest.raises(EngineNotLoaded):
        await engine.translate(["Hi"], source="en", target="de")
    report = await engine.load()
    assert report.resumed and engine.state is EngineState.LOADED
    [result] = await engine.translate(["Hi there"], source="en", target="de")
    assert result.text
    await engine.unload()
    assert engine.state is EngineState.UNLOADED


async def test_a_missing_folder_is_missing_not_failed(tmp_path: Path) -> None:
    engine = translator(tmp_path / "nowhere", tmp_path)
    assert engine.state is EngineState.MISSING
    health = await engine.health()
    assert "model.bin" in health.detail and "tokenizer_config.json" in health.detail
    assert engine.artifacts() == []
    hub = create_engine(
        "ctranslate2",
        EngineSpec(
            "t",
            Role.TRANSLATION,
            "someone/nllb-ct2",
            tmp_path,
            options={"tokenizer": "facebook/nllb-200-distilled-600M"},
        ),
    )
    assert [a.repo_id for a in hub.artifacts()] == [
        "someone/nllb-ct2",
        "facebook/nllb-200-distilled-600M",
    ]
