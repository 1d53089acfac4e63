"""LibreTranslate's API (``POST /translate``, ``GET /languages``) on the tiny NLLB-200 model, called
as LibreTranslate's own docs show: plain HTTP with JSON or a form, the key in ``api_key``. The
words are noise; what is checked is LibreTranslate's shape, its errors and their statuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestServer

from orchestrator.api.app import create_api_app
from orchestrator.api.translate import field_key
from orchestrator.app.runtime import Runtime
from orchestrator.config import load_config
from tests.conftest import API_KEY, RuntimeFactory, tiny_profile_toml


def translation_toml(nllb: Path) -> str:
    return f"""
[engines.translation]
role = "translation"
adapter = "ctranslate2"
model = "{nllb}"
compute_type = "int8"
preload = false
options = {{ max_decoding_length = 12, beam_size = 2, cpu_threads = 1 }}
"""


@pytest.fixture
async def http(
    make_runtime: RuntimeFactory,
    tmp_path: Path,
    tiny_whisper_dir: Path,
    tiny_piper_onnx: Path,
    tiny_nllb_dir: Path,
    aiohttp_server: Any,
) -> Any:
    path = tmp_path / "translate.toml"
    base = tiny_profile_toml(tiny_whisper_dir, tiny_piper_onnx, tmp_path, preload=False)
    path.write_text(
        base + translation_toml(tiny_nllb_dir) + "\n[api]\ntranslate_char_limit = 200\n"
    )
    runtime: Runtime = make_runtime(load_config(config_file=path, environ={}))
    server: TestServer = await aiohttp_server(create_api_app(runtime))
    async with httpx.AsyncClient(base_url=str(server.make_url("")), timeout=60) as client:
        yield client


async def test_a_json_call_translates_with_the_key_in_the_body(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/translate",
        json={"q": "Hello there.\nHow are you?", "source": "en", "target": "de",
              "format": "text", "api_key": API_KEY},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"translatedText"}
    assert isinstance(body["translatedText"], str) and body["translatedText"].count("\n") == 1


async def test_a_form_call_with_a_list_alternatives_and_a_bearer_key(
    http: httpx.AsyncClient,
) -> None:
    form = {"q": "The cat sat.", "source": "EN", "target": "fr", "alternatives": "2",
            "api_key": API_KEY}  # fmt: skip
    response = await http.post("/translate", data=form)
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["translatedText"], str) and body["translatedText"]
    assert (
        isinstance(body["alternatives"], list)
        and body["translatedText"] not in body["alternatives"]
    )
    batch = await http.post(
        "/translate",
        json={"q": ["One.", "Two."], "source": "en", "target": "zh", "alternatives": 1},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert batch.status_code == 200, batch.text
    listed = batch.json()
    assert len(listed["translatedText"]) == 2 and len(listed["alternatives"]) == 2


async def test_html_keeps_its_markup(http: httpx.AsyncClient) -> None:
    html = '<p class="x">Hello <b>cat</b></p><script>var a = 1;</script>'
    response = await http.post(
        "/translate",
        json={"q": html, "source": "en", "target": "de", "format": "html", "api_key": API_KEY},
    )
    assert response.status_code == 200, response.text
    out = response.json()["translatedText"]
    assert out.startswith('<p class="x">') and "<b>" in out and out.endswith("</script>")
    assert "<script>var a = 1;</script>" in out


async def test_languages_list_codes_names_and_targets(http: httpx.AsyncClient) -> None:
    response = await http.get("/languages", params={"api_key": API_KEY})
    assert response.status_code == 200, response.text
    by_code = {lang["code"]: lang for lang in response.json()}
    assert by_code["en"]["name"] == "English" and "de" in by_code["en"]["targets"]
    assert by_code["zh-Hans"]["name"] == "Chinese"


@pytest.mark.parametrize(
    ("fields", "status", "error"),
    [
        ({"source": "en", "target": "de"}, 400, "Invalid request: missing q parameter"),
        ({"q": "", "source": "en", "target": "de"}, 400, "Invalid request: missing q parameter"),
        ({"q": [], "source": "en", "target": "de"}, 400, "Invalid request: missing q parameter"),
        ({"q": "Hi", "target": "de"}, 400, "Invalid request: missing source parameter"),
        ({"q": "Hi", "source": "en"}, 400, "Invalid request: missing target parameter"),
        ({"q": "Hi", "source": "xx", "target": "de"}, 400, "xx is not supported"),
        ({"q": "Hi", "source": "en", "target": "qq"}, 400, "qq is not supported"),
        ({"q": "Hi", "source": "en", "target": "de", "format": "pdf"}, 400,
         "pdf format is not supported"),
        ({"q": "Hi", "source": "en", "target": "de", "alternatives": "x"}, 400,
         "Invalid request: alternatives parameter is not a number"),
        ({"q": "Hi", "source": "en", "target": "de", "alternatives": 9}, 400,
         "Invalid request: alternatives parameter must be <= 3"),
        ({"q": "x" * 201, "source": "en", "target": "de"}, 400,
         "Invalid request: request (201) exceeds text limit (200)"),
        ({"q": [1], "source": "en", "target": "de"}, 400,
         "Invalid request: q must be a string or a list of strings"),
    ],
)  # fmt: skip
async def test_bad_requests_get_libretranslates_errors(
    http: httpx.AsyncClient, fields: dict[str, Any], status: int, error: str
) -> None:
    response = await http.post("/translate", json={**fields, "api_key": API_KEY})
    assert response.status_code == status
    assert response.json() == {"error": error}


async def test_keys_are_checked_as_libretranslate_does(http: httpx.AsyncClient) -> None:
    body = {"q": "Hi", "source": "en", "target": "de"}
    missing = await http.post("/translate", json=body)
    assert missing.status_code == 400 and "API key" in missing.json()["error"]
    wrong = await http.post("/translate", json={**body, "api_key": "nope"})
    assert (wrong.status_code, wrong.json()) == (403, {"error": "Invalid API key"})
    bearer = await http.get("/languages", headers={"Authorization": "Bearer nope"})
    assert bearer.status_code == 401
    assert (await http.get("/languages")).status_code == 400


async def test_malformed_and_oversized_bodies(http: httpx.AsyncClient) -> None:
    bad = await http.post(
        "/translate", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert (bad.status_code, bad.json()) == (400, {"error": "Invalid JSON format"})
    huge = await http.post("/translate", json={"q": "x" * (1 << 20), "api_key": API_KEY})
    assert huge.status_code == 413 and "larger than" in huge.json()["error"]


async def test_auto_detects_the_source_language(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/translate",
        json={"q": "Guten Morgen, wie geht es dir heute?", "source": "auto", "target": "en",
              "api_key": API_KEY},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    detected = response.json()["detectedLanguage"]
    assert detected["language"] == "de" and 0 < detected["confidence"] <= 100


@pytest.mark.parametrize(
    ("method", "content_type", "body", "query", "key"),
    [
        ("GET", "", b"", {"api_key": " k "}, "k"),
        ("POST", "application/json", b'{"q": "x", "api_key": "k"}', {}, "k"),
        ("POST", "application/json; charset=utf-8", b'{"api_key": 7}', {}, ""),
        ("POST", "application/json", b"{nope", {}, ""),
        ("POST", "application/json", b"[1]", {}, ""),
        ("POST", "application/x-www-form-urlencoded", b"q=x&api_key=k%2B1", {}, "k+1"),
        ("POST", "multipart/form-data; boundary=b", b"--b--", {}, ""),
    ],
)
def test_another_front_reads_the_body_key_as_the_route_does(
    method: str, content_type: str, body: bytes, query: dict[str, str], key: str
) -> None:
    assert field_key(method, content_type, body, query) == key
