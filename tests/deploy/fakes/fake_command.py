#!/usr/bin/env python3
"""One recording fake for every command the deploy scripts call: gcloud, terraform, apt-get,
systemctl, ubuntu-drivers, nvidia-smi, setpriv, ollama... (tests/deploy/tools.py links it under
each name). Each call appends ``{"name", "args", "env"[, "stdin"]}`` as a JSON line to
``$FAKE_LOG`` (``env``: the VO_* variables and HF_TOKEN it was given).

What it answers comes from ``$FAKE_RULES``, a JSON list of ``{"name", "match", "stdout", "rc"}``:
the first rule of this name whose ``match`` words all appear in the arguments wins; none: exit
0 and print nothing. A few names act as well, as the real command would for the scripts:

    setpriv          drops its --options and runs the rest (the command, as the service user)
    ubuntu-drivers   leaves $FAKE_STATE/driver; nvidia-smi fails until it exists
    ensure-venv.sh   (the fake project's) makes $VO_VENV/bin/python, this fake under that name
    gcloud, ... --data-file=-   reads stdin and records it (a secret must come that way)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path


def record(name: str, args: list[str], stdin: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k.startswith(("VO_", "VO__")) or k == "HF_TOKEN"}
    entry: dict[str, object] = {"name": name, "args": args, "env": env}
    if stdin is not None:
        entry["stdin"] = stdin
    with open(os.environ["FAKE_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")


def answer(name: str, args: list[str]) -> int:
    rules = (
        json.loads(Path(os.environ["FAKE_RULES"]).read_text()) if "FAKE_RULES" in os.environ else []
    )
    for rule in rules:
        if rule["name"] == name and all(word in args for word in rule.get("match", [])):
            sys.stdout.write(rule.get("stdout", ""))
            return int(rule.get("rc", 0))
    return 0


def main() -> int:
    name = Path(sys.argv[0]).name
    args = sys.argv[1:]
    stdin = sys.stdin.read() if "--data-file=-" in args else None
    record(name, args, stdin)
    state = Path(os.environ.get("FAKE_STATE", "/nonexistent"))
    if name == "setpriv":
        rest = args[next(i for i, a in enumerate(args) if not a.startswith("--")) :]
        os.execvp(rest[0], rest)
    if name == "ubuntu-drivers":
        state.mkdir(parents=True, exist_ok=True)
        (state / "driver").touch()
    if name == "nvidia-smi" and not (state / "driver").exists():
        return 9
    if name == "ensure-venv.sh":
        python = Path(os.environ["VO_VENV"]) / "bin" / "python"
        python.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(__file__, python)
        python.chmod(0o755)
    return answer(name, args)


if __name__ == "__main__":
    sys.exit(main())
