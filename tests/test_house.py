"""The shape of the house, checked: small modules, and nothing at the core's root but entry points.

The import layers themselves are import-linter contracts (``pyproject.toml``, run by
``lint-imports`` in CI); ARCHITECTURE.md draws them.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 400
ENTRY_POINTS = {"__init__.py", "__main__.py", "cli.py", "server.py"}


def test_no_module_is_over_the_limit() -> None:
    too_long = {
        str(path.relative_to(ROOT)): lines
        for package in ("orchestrator", "services", "console")
        for path in (ROOT / package).rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert too_long == {}, f"split these modules (over {MAX_LINES} lines): {too_long}"


def test_the_core_root_holds_only_entry_points() -> None:
    modules = {path.name for path in (ROOT / "orchestrator").glob("*.py")}
    assert modules == ENTRY_POINTS, "a module belongs in the subpackage of its concern"
