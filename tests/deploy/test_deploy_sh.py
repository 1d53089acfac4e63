"""deploy/gcp/deploy.sh with fake ``gcloud`` and ``terraform`` on the PATH that record their
arguments and answer as the real ones would (tests/deploy/fakes/fake_command.py).

Each test runs a copy of deploy/gcp inside a throw-away git repository, so the script packs
that repository and writes its settings there, never into this checkout."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.deploy.tools import GCP, argvs, calls, fake_bin

PROJECT = "tutor-proj"
ENABLED = "compute.googleapis.com\n"


def rules(*, regional: str = "1.0\t0.0", everywhere: str = "1.0\t0.0", url: str = "") -> list:
    """gcloud and terraform as a fresh project with one GPU of quota would answer."""
    return [
        {"name": "gcloud", "match": ["auth", "list"], "stdout": "me@example.com\n"},
        {"name": "gcloud", "match": ["config", "get-value"], "stdout": f"{PROJECT}\n"},
        {"name": "gcloud", "match": ["print-access-token"], "stdout": "ya29.token\n"},
        {"name": "gcloud", "match": ["version"], "stdout": "Google Cloud SDK 528.0.0\n"},
        {"name": "gcloud", "match": ["services", "list"], "stdout": ENABLED},
        {"name": "gcloud", "match": ["instances", "describe"], "rc": 1},  # not made yet
        {"name": "gcloud", "match": ["regions", "describe"], "stdout": regional + "\n"},
        {"name": "gcloud", "match": ["project-info", "describe"], "stdout": everywhere + "\n"},
        {"name": "gcloud", "match": ["secrets", "describe"], "rc": 1},
        {"name": "terraform", "match": ["version"], "stdout": "Terraform v1.9.8\non linux_amd64\n"},
        {"name": "terraform", "match": ["output", "-raw", "gateway_url"], "stdout": url},
        {"name": "terraform", "match": ["output"], "stdout": 'gateway_url = "https://x"\n'},
    ]


class Kit:
    """A copy of deploy/gcp in a git repository of its own, and the fakes' log."""

    def __init__(self, tmp: Path) -> None:
        self.repo = tmp / "repo"
        self.here = self.repo / "deploy" / "gcp"
        shutil.copytree(
            GCP, self.here, ignore=shutil.ignore_patterns("build", ".terraform*", "*.json")
        )
        (self.repo / "README.md").write_text("the project\n")
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
        subprocess.run([*git, "init", "-q"], cwd=self.repo, check=True)
        subprocess.run([*git, "add", "-A"], cwd=self.repo, check=True)
        subprocess.run([*git, "commit", "-qm", "one"], cwd=self.repo, check=True)
        self.log = tmp / "calls.jsonl"
        self.rules_file = tmp / "rules.json"
        self.bin = fake_bin(tmp / "bin", "gcloud", "terraform")

    def run(self, *args: str, answers: list, env: dict[str, str] | None = None):
        self.rules_file.write_text(json.dumps(answers))
        environ = {
            **{k: v for k, v in os.environ.items() if k != "HF_TOKEN"},
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "FAKE_LOG": str(self.log),
            "FAKE_RULES": str(self.rules_file),
            **(env or {}),
        }
        return subprocess.run(
            [str(self.here / "deploy.sh"), *args],
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    def gcloud(self) -> list[list[str]]:
        return argvs(self.log, "gcloud")

    def terraform(self) -> list[list[str]]:
        return argvs(self.log, "terraform")


@pytest.fixture
def kit(tmp_path: Path) -> Kit:
    return Kit(tmp_path)


def quota_filters(kit: Kit) -> list[str]:
    return [a for args in kit.gcloud() for a in args if a.startswith("--filter=quotas.metric=")]


def test_dry_run_prints_every_step_and_changes_nothing(kit: Kit) -> None:
    done = kit.run("--project", PROJECT, "--dry-run", answers=rules())
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for number, title in enumerate(
        ["tools", "account and project", "APIs", "GPU quota", "Hugging Face token",
         "pack the project", "terraform init and apply", "wait for the gateway"],
        start=1,
    ):  # fmt: skip
        assert f"==> {number}. {title}" in out
    here = str(kit.here)
    assert "would run: gcloud services enable compute.googleapis.com" in out
    assert f"would run: git -C {kit.repo} archive --format=tar.gz" in out
    assert f"would run: terraform -chdir={here} init -input=false" in out
    assert f"would run: terraform -chdir={here} apply -input=false" in out
    assert '"project": "tutor-proj"' in out and '"gpu": "t4"' in out  # the settings shown
    # it only looked: no terraform beyond its version, no gcloud that changes anything
    assert kit.terraform() == [["version"]]
    changing = {"enable", "create", "add", "delete", "update"}
    assert not [args for args in kit.gcloud() if changing & set(args)]
    assert quota_filters(kit) == [
        "--filter=quotas.metric=NVIDIA_T4_GPUS",
        "--filter=quotas.metric=GPUS_ALL_REGIONS",
    ]
    regions = next(args for args in kit.gcloud() if "regions" in args)
    assert regions[3] == "us-central1"
    assert not (kit.here / "deploy.auto.tfvars.json").exists()
    assert not (kit.here / "build").exists()


def test_the_quota_checked_follows_the_gpu_and_spot(kit: Kit) -> None:
    done = kit.run("--project", PROJECT, "--gpu", "l4", "--spot", "--dry-run", answers=rules())
    assert done.returncode == 0, done.stderr
    assert quota_filters(kit)[0] == "--filter=quotas.metric=PREEMPTIBLE_NVIDIA_L4_GPUS"


def test_a_missing_quota_is_explained_with_the_console_link(kit: Kit) -> None:
    done = kit.run("--project", PROJECT, "--yes", answers=rules(everywhere="0.0\t0.0"))
    assert done.returncode == 1
    assert "GPUS_ALL_REGIONS" in done.stderr
    assert (
        f"https://console.cloud.google.com/iam-admin/quotas?project={PROJECT}"
        "&metric=compute.googleapis.com%2Fgpus_all_regions"
    ) in done.stderr
    assert "NVIDIA_T4_GPUS in region" not in done.stderr  # that one was there
    assert kit.terraform() == [["version"]]  # nothing applied


async def test_a_real_run_applies_and_waits_for_the_gateway(kit: Kit) -> None:
    asked: list[str] = []

    async def live(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.json_response({"status": "live"})

    app = web.Application()
    app.router.add_get("/health/live", live)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url("")).rstrip("/")
        args = ("--project", PROJECT, "--gpu", "t4", "--yes")
        env = {"HF_TOKEN": "hf_secretvalue"}
        done = await run_async(kit, *args, answers=rules(url=url), env=env)
    finally:
        await server.close()
    assert done["rc"] == 0, done["stderr"]
    gcloud = kit.gcloud()
    enable = next(args for args in gcloud if "enable" in args)
    assert set(enable) >= {
        "compute.googleapis.com",
        "iam.googleapis.com",
        "iap.googleapis.com",
        "secretmanager.googleapis.com",
        "storage.googleapis.com",
        f"--project={PROJECT}",
    }
    assert next(a for a in gcloud if "create" in a)[:3] == ["secrets", "create", "vo-hf-token"]
    (added,) = [c for c in calls(kit.log) if "add" in c["args"]]
    assert added["stdin"] == "hf_secretvalue"  # through stdin ...
    assert not [args for args in gcloud if any("hf_secretvalue" in a for a in args)]  # ... only
    tf = kit.terraform()
    here = f"-chdir={kit.here}"
    assert [here, "init", "-input=false"] in tf
    assert [here, "apply", "-input=false", "-auto-approve"] in tf
    assert tf.index([here, "init", "-input=false"]) < tf.index(
        [here, "apply", "-input=false", "-auto-approve"]
    )
    settings = json.loads((kit.here / "deploy.auto.tfvars.json").read_text())
    assert settings == {
        "project": PROJECT,
        "zone": "us-central1-a",
        "gpu": "t4",
        "spot": False,
        "bridge": False,
        "domain": "",
        "name": "vo",
        "hf_token_secret": "vo-hf-token",
    }
    with tarfile.open(kit.here / "build" / "voice-orchestrator.tar.gz") as archive:
        names = archive.getnames()
    assert "deploy/gcp/startup.sh" in names and "README.md" in names
    assert asked == ["/health/live"]
    assert f"{url} answers" in done["stdout"]
    assert "==> 9. done" in done["stdout"]

    # A second run without flags keeps what the first chose.
    done = kit.run("--dry-run", answers=rules(url=url))
    assert done.returncode == 0, done.stderr
    assert "keeping the secret vo-hf-token" in done.stdout


async def run_async(kit: Kit, *args: str, answers: list, env: dict[str, str]) -> dict[str, Any]:
    """kit.run off the event loop, which serves the gateway's health meanwhile."""
    done = await asyncio.to_thread(kit.run, *args, answers=answers, env=env)
    return {"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def test_destroy_undoes_what_deploy_made(kit: Kit) -> None:
    settings = {"project": PROJECT, "hf_token_secret": "vo-hf-token"}
    (kit.here / "deploy.auto.tfvars.json").write_text(json.dumps(settings))
    kit.rules_file.write_text(json.dumps(rules()))
    environ = {
        **os.environ,
        "PATH": f"{kit.bin}:{os.environ['PATH']}",
        "FAKE_LOG": str(kit.log),
        "FAKE_RULES": str(kit.rules_file),
    }
    done = subprocess.run(
        [str(kit.here / "destroy.sh"), "--yes"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    here = f"-chdir={kit.here}"
    assert [here, "destroy", "-input=false", "-auto-approve"] in kit.terraform()
    assert not [args for args in kit.gcloud() if "delete" in args]  # the user's token is kept
    assert "kept: vo-hf-token" in done.stdout
    assert not (kit.here / "deploy.auto.tfvars.json").exists()
