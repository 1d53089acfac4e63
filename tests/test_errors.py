"""The one error tree: every error class the product defines is in it, and renders alike.

The classes are discovered (every module of orchestrator/, services/ and console/ is imported and
the root's subclasses walked), never listed: a new error outside the tree, or without a code, a
status or a way to build it here, fails this suite.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from collections.abc import Callable, Iterator

import pytest

import console
import orchestrator
import services
from orchestrator.api.errors import describe, error_response, realtime_error
from services.errors import VoiceOrchestratorError

PACKAGES = (orchestrator, services, console)


def _import_everything() -> None:
    for package in PACKAGES:
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.rsplit(".", 1)[-1] == "__main__":
                continue  # runs the CLI when imported
            importlib.import_module(info.name)


def _tree(root: type[VoiceOrchestratorError]) -> Iterator[type[VoiceOrchestratorError]]:
    yield root
    for sub in root.__subclasses__():
        yield from _tree(sub)


def _product_errors() -> list[type[VoiceOrchestratorError]]:
    _import_everything()
    ours = tuple(package.__name__ + "." for package in PACKAGES)
    found = {cls for cls in _tree(VoiceOrchestratorError) if cls.__module__.startswith(ours)}
    return sorted(found, key=lambda cls: (cls.__module__, cls.__qualname__))


# Builders for classes whose constructor is not ``cls(message)``, found along the MRO: a class
# with a constructor of its own and no builder here fails ``test_every_error_is_in_the_tree``.
BUILDERS: dict[str, Callable[[type[VoiceOrchestratorError]], VoiceOrchestratorError]] = {
    "WakeTimeout": lambda cls: cls(["tts"], 8.0),
    "HostWaking": lambda cls: cls("booting", 42.0),
    "SupervisorError": lambda cls: cls("ollama", "exited with 1", ("boom",)),
    "OverrideError": lambda cls: cls(["hibernation.cool_after_s: must be > 0"]),
    "Refused": lambda cls: cls("not now", "not_in_duplex", "session.backend"),
}


def build(cls: type[VoiceOrchestratorError]) -> VoiceOrchestratorError:
    for base in cls.__mro__:
        if base.__name__ in BUILDERS:
            return BUILDERS[base.__name__](cls)
    return cls("something went wrong")


ERRORS = _product_errors()


def test_the_strays_joined_the_tree() -> None:
    names = {cls.__name__ for cls in ERRORS}
    assert {"WakeTimeout", "UnknownEngine", "ConfigError", "SupervisorError", "Refused"} <= names
    assert len(ERRORS) >= 25


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__qualname__)
def test_every_error_is_in_the_tree(cls: type[VoiceOrchestratorError]) -> None:
    assert isinstance(cls.code, str) and cls.code.isidentifier(), cls.code
    assert isinstance(cls.status, int) and 400 <= cls.status <= 599
    assert type(cls.transient) is bool
    exc = build(cls)
    assert exc.code and 400 <= exc.status <= 599 and type(exc.transient) is bool
    assert exc.public_message()


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__qualname__)
def test_http_and_realtime_render_it_alike(cls: type[VoiceOrchestratorError]) -> None:
    exc = build(cls)
    wire = describe(exc)
    response = error_response(wire)
    assert response.text is not None
    http = json.loads(response.text)["error"]
    event = realtime_error(describe(exc), "event_123")
    assert response.status == exc.status
    assert http == {k: v for k, v in event.items() if k != "event_id"}
    assert event["event_id"] == "event_123"
    assert http["code"] == exc.code and http["message"] == exc.public_message()
    assert http["type"] == ("invalid_request_error" if exc.status < 500 else "server_error")
    if exc.retry_after_s is not None:
        assert response.headers["Retry-After"] == str(exc.retry_after_s)


def test_built_in_bases_still_catch_the_strays() -> None:
    from orchestrator.fleet.errors import UnknownEngine
    from orchestrator.gpu.planner import PlanError

    with pytest.raises(KeyError):
        raise UnknownEngine("nope")
    with pytest.raises(ValueError):
        raise PlanError("too many engines")


def test_what_is_not_ours_stays_an_internal_error() -> None:
    wire = describe(RuntimeError("secret detail"))
    assert (wire.status, wire.code, wire.type) == (500, "internal_error", "server_error")
    assert "secret" not in wire.message
