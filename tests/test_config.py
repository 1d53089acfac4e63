"""Config layering, profile choice and validation errors that name the key and its source."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import (
    CONFIG_DIR,
    CONSOLE_OVERRIDES,
    ConfigError,
    list_profiles,
    load_config,
    profile_for_gpu,
)
from services.base import Role

GIB = 2**30


def write(tmp_path: Path, text: str, name: str = "user.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_five_profiles_ship() -> None:
    assert {"cpu", "t4-16gb", "l4-24gb", "a100-40gb", "a100-80gb"} <= set(list_profiles())


@pytest.mark.parametrize("profile", list_profiles())
def test_every_shipped_profile_validates(profile: str) -> None:
    config = load_config(profile=profile, environ={})
    assert config.profile == profile
    assert config.engines, "a profile must name its engines"
    assert config.server.api_port == 11400
    assert config.server.console_port == 8766
    assert config.server.console_host == "127.0.0.1"
    for name in config.routing.default:
        assert name in config.engines


def test_defaults_hold_the_documented_thresholds() -> None:
    hibernation = load_config(profile="cpu", environ={}).hibernation
    steps = (hibernation.warm_after_s, hibernation.cool_after_s)
    assert steps == (30, 300)
    assert (hibernation.cold_after_s, hibernation.dormant_after_s) == (1800, 7200)


def test_example_config_loads() -> None:
    config = load_config(config_file=CONFIG_DIR / "example.toml", environ={})
    assert config.engines["asr"].role is Role.ASR


@pytest.mark.parametrize(
    ("gpu_bytes", "expected"),
    [
        (None, "cpu"),
        (int(15.7 * GIB), "t4-16gb"),
        (int(22.5 * GIB), "l4-24gb"),
        (int(23.6 * GIB), "l4-24gb"),
        (int(39.4 * GIB), "a100-40gb"),
        (int(79.2 * GIB), "a100-80gb"),
        (int(139 * GIB), "a100-80gb"),
        (8 * GIB, "cpu"),
    ],
)
def test_auto_profile_follows_the_gpu(gpu_bytes: int | None, expected: str) -> None:
    assert profile_for_gpu(gpu_bytes) == expected
    assert load_config(environ={}, gpu_memory_bytes=gpu_bytes).profile == expected


def test_user_file_and_environment_layer_on_top(tmp_path: Path) -> None:
    user = write(tmp_path, "[server]\napi_port = 12000\nconsole_port = 12001\n")
    env = {"VO__SERVER__API_PORT": "12345", "VO__ENGINES__ASR__PRIORITY": "7"}
    config = load_config(profile="cpu", config_file=user, environ=env)
    assert config.server.api_port == 12345  # environment beats the file
    assert config.server.console_port == 12001  # the file beats the defaults
    assert config.engines["asr"].priority == 7
    assert config.engines["asr"].adapter == "faster-whisper"  # untouched keys survive


def test_environment_values_read_as_toml_or_text() -> None:
    env = {"VO__MODELS__AUTO_DOWNLOAD": "false", "VO__ENGINES__TTS__MODEL": "/v/x.onnx"}
    config = load_config(profile="cpu", environ=env)
    assert config.models.auto_download is False
    assert config.engines["tts"].model == "/v/x.onnx"


def test_profile_can_come_from_the_user_file(tmp_path: Path) -> None:
    user = write(tmp_path, 'profile = "t4-16gb"\n')
    assert load_config(config_file=user, environ={}).profile == "t4-16gb"


def test_bad_value_names_key_and_file(tmp_path: Path) -> None:
    user = write(tmp_path, '[engines.asr]\ndevice = "gpu"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(profile="cpu", config_file=user, environ={})
    message = str(caught.value)
    assert "engines.asr.device" in message
    assert str(user) in message
    assert "'gpu'" in message


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(profile="cpu", environ={"VO__SERVER__API_PORT": "99999"})
    assert "server.api_port" in str(caught.value)
    assert "VO__SERVER__API_PORT" in str(caught.value)


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    user = write(tmp_path, "[server]\napi_prot = 1\n")
    with pytest.raises(ConfigError, match=r"server\.api_prot: unknown key"):
        load_config(profile="cpu", config_file=user, environ={})


def test_invalid_toml_names_the_file_and_line(tmp_path: Path) -> None:
    user = write(tmp_path, "[server\napi_port = 1\n")
    with pytest.raises(ConfigError, match=r"user\.toml: invalid TOML.*line 1"):
        load_config(profile="cpu", config_file=user, environ={})


def test_missing_file_and_unknown_profile(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(profile="cpu", config_file=tmp_path / "nope.toml", environ={})
    with pytest.raises(ConfigError, match=r"unknown profile 'h200'.*cpu"):
        load_config(profile="h200", environ={})


def test_unknown_adapter_and_wrong_role(tmp_path: Path) -> None:
    user = write(tmp_path, '[engines.asr]\nadapter = "whisperx"\n')
    with pytest.raises(ConfigError, match=r"unknown adapter 'whisperx'.*faster-whisper"):
        load_config(profile="cpu", config_file=user, environ={})
    user = write(tmp_path, '[engines.asr]\nadapter = "piper"\n')
    with pytest.raises(ConfigError, match="serves role tts, not asr"):
        load_config(profile="cpu", config_file=user, environ={})


def test_thresholds_must_grow(tmp_path: Path) -> None:
    user = write(tmp_path, "[hibernation]\ncool_after_s = 10\n")
    with pytest.raises(ConfigError, match="thresholds must grow"):
        load_config(profile="cpu", config_file=user, environ={})


def test_route_must_name_configured_engines(tmp_path: Path) -> None:
    user = write(tmp_path, '[routing]\ndefault = ["asr", "brain"]\n')
    with pytest.raises(ConfigError, match="unknown engines: brain"):
        load_config(profile="cpu", config_file=user, environ={})


def test_config_is_frozen() -> None:
    config = load_config(profile="cpu", environ={})
    with pytest.raises(ValueError, match="frozen"):
        config.server.api_port = 1  # type: ignore[misc]


def test_an_engine_can_be_switched_off(tmp_path: Path) -> None:
    user = write(tmp_path, "[engines.llm]\nenabled = false\n")
    config = load_config(profile="cpu", config_file=user, environ={})
    assert "llm" not in config.engines
    assert "vad" in config.engines


def test_whole_tables_are_not_dumped_into_errors(tmp_path: Path) -> None:
    user = write(tmp_path, '[routing]\ndefault = ["nothing"]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(profile="cpu", config_file=user, environ={})
    assert "{" not in str(caught.value)


def test_console_overrides_layer_over_files_and_under_the_environment(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    user = write(tmp_path, f'[state]\ndir = "{state}"\n[hibernation]\nwarm_after_s = 40\n')
    (state / CONSOLE_OVERRIDES).write_text(
        "[hibernation]\nwarm_after_s = 45\ncool_after_s = 600\n"
        '[hibernation.actions.cool]\nunload_roles = ["tts"]\n'
    )
    config = load_config(profile="cpu", config_file=user, environ={})
    assert (config.hibernation.warm_after_s, config.hibernation.cool_after_s) == (45, 600)
    assert config.hibernation.actions["cool"].unload_roles == (Role.TTS,)
    env = {"VO__HIBERNATION__WARM_AFTER_S": "50"}
    assert load_config(profile="cpu", config_file=user, environ=env).hibernation.warm_after_s == 50


def test_console_overrides_follow_a_state_dir_set_in_the_environment(tmp_path: Path) -> None:
    (tmp_path / CONSOLE_OVERRIDES).write_text("[hibernation]\nwarm_after_s = 77\n")
    env = {"VO__STATE__DIR": str(tmp_path)}
    assert load_config(profile="cpu", environ=env).hibernation.warm_after_s == 77


def test_console_overrides_may_only_set_hibernation(tmp_path: Path) -> None:
    overrides = tmp_path / CONSOLE_OVERRIDES
    overrides.write_text('[server]\napi_host = "0.0.0.0"\n')
    env = {"VO__STATE__DIR": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"only \[hibernation\] may be set here, not server"):
        load_config(profile="cpu", environ=env)
    overrides.write_text("[hibernation]\nwarm_after_s = -3\n")
    with pytest.raises(ConfigError, match=r"console-overrides\.toml: hibernation\.warm_after_s"):
        load_config(profile="cpu", environ=env)
