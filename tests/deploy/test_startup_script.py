"""deploy/gcp/startup.sh against a fake metadata server, Secret Manager and Cloud Storage
(tests/deploy/fake_gce.py) and fake apt-get, ubuntu-drivers, nvidia-smi, systemctl, setpriv,
ollama... on the PATH (tests/deploy/fakes/fake_command.py), with VO_ROOT putting everything it
writes under a temporary folder. The project it unpacks is a small archive of the real units
and config, with a fake scripts/ensure-venv.sh whose venv python records its arguments."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import stat
import tarfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from orchestrator.config import load_config
from tests.deploy.fake_gce import FakeGce
from tests.deploy.tools import DEPLOY, FAKE, GCP, ROOT, argvs, calls, fake_bin

PROJECT = "tutor-proj"
BUCKET = "tutor-proj-vo-deploy"
OBJECT = "source/voice-orchestrator-0123abcd.tar.gz"
HOST_KEY = "hostkey0123456789"
API_KEY = "apikey9876543210"
FAKES = ("apt-get", "dpkg", "ubuntu-drivers", "nvidia-smi", "modprobe", "systemctl", "useradd",
         "chown", "setpriv", "ollama", "git")  # fmt: skip


def source_archive() -> bytes:
    """The project as the VM gets it, cut down: real units and config, a fake installer."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(DEPLOY / "systemd", "deploy/systemd")
        archive.add(ROOT / "config", "config")
        archive.add(FAKE, "scripts/ensure-venv.sh")
    return buffer.getvalue()


@dataclass
class Boot:
    rc: int
    output: str
    root: Path
    log: Path

    def args(self, name: str) -> list[list[str]]:
        return argvs(self.log, name)

    @property
    def etc(self) -> Path:
        return self.root / "etc" / "voice-orchestrator"


class Vm:
    """One VM: its root folder, its fakes, and the fake Google endpoints it sees."""

    def __init__(self, tmp: Path, role: str, attributes: dict[str, str]) -> None:
        self.tmp = tmp
        self.root = tmp / "root"
        self.boots = 0
        self.bin = fake_bin(tmp / "bin", *FAKES)
        self.gce = FakeGce(
            project=PROJECT,
            attributes={
                "vo-role": role,
                "vo-source-bucket": BUCKET,
                "vo-source-object": OBJECT,
                "vo-host-key-secret": "vo-gateway-host-key",
                **attributes,
            },
            secrets={"vo-gateway-host-key": HOST_KEY, "vo-api-key": API_KEY, "vo-hf": "hf_tok"},
            objects={(BUCKET, OBJECT): source_archive()},
        )

    async def boot(self, server: TestServer) -> Boot:
        self.boots += 1
        log = self.tmp / f"calls-{self.boots}.jsonl"  # each boot's calls apart
        base = str(server.make_url("")).rstrip("/")
        env = {
            "PATH": f"{self.bin}:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.tmp),
            "VO_METADATA_URL": f"{base}/computeMetadata/v1",
            "VO_SECRETS_API": f"{base}/v1",
            "VO_STORAGE_API": f"{base}/storage/v1",
            "VO_ROOT": str(self.root),
            "VO_SECRET_TRIES": "2",
            "VO_SECRET_WAIT_S": "0",
            "FAKE_LOG": str(log),
            "FAKE_STATE": str(self.tmp / "state"),
        }
        process = await asyncio.create_subprocess_exec(
            str(GCP / "startup.sh"),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode is not None
        return Boot(process.returncode, output.decode(), self.root, log)


async def started(vm: Vm) -> TestServer:
    server = TestServer(vm.gce.app(), host="127.0.0.1")
    await server.start_server()
    return server


@pytest.fixture
def host_vm(tmp_path: Path) -> Vm:
    return Vm(tmp_path, "host", {"vo-profile": "t4-16gb", "vo-usd-per-hour": "0.54",
                                 "vo-api-port": "11400"})  # fmt: skip


async def test_the_gpu_host_boot_writes_its_unit_config_and_keys(host_vm: Vm) -> None:
    server = await started(host_vm)
    try:
        boot = await host_vm.boot(server)
        again = await host_vm.boot(server)
    finally:
        await server.close()
    assert boot.rc == 0, boot.output

    unit = boot.root / "etc/systemd/system/voice-orchestrator.service"
    assert unit.read_text() == (DEPLOY / "systemd/voice-orchestrator.service").read_text()

    server_toml = boot.etc / "server.toml"
    assert tomllib.loads(server_toml.read_text()) == {
        "profile": "t4-16gb",
        "server": {"api_port": 11400},
        "costs": {"usd_per_hour": 0.54},
    }
    config = load_config(config_file=server_toml, environ={})  # as the server will read it
    assert (config.profile, config.server.api_port, config.costs.usd_per_hour) == (
        "t4-16gb",
        11400,
        0.54,
    )
    env_file = boot.etc / "server.env"
    assert env_file.read_text() == f"VO_GATEWAY_KEYS={HOST_KEY}\n"  # no HF token was asked for
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600

    # the machine: the driver from Ubuntu's archive, the project's venv, the user
    assert ["install", "--gpgpu", "nvidia:580-server"] in boot.args("ubuntu-drivers")
    installs = [a for a in boot.args("apt-get") if a[:1] == ["install"]]
    assert any("nvidia-utils-580-server" in a for a in installs)
    assert any({"python3-venv", "ubuntu-drivers-common", "zstd"} <= set(a) for a in installs)
    assert [a[-1] for a in boot.args("useradd")] == ["voice-orchestrator"]
    (venv,) = [c for c in calls(boot.log) if c["name"] == "ensure-venv.sh"][:1]
    assert venv["args"] == ["run"]
    assert venv["env"]["VO_VENV"] == str(boot.root / "opt/voice-orchestrator/.venv")

    # the profile's models onto the disk, as the service user, where the unit will look
    downloads = [c for c in calls(boot.log) if c["name"] == "python"]
    assert downloads[0]["args"] == ["-m", "orchestrator", "download", "--config", str(server_toml)]
    assert downloads[0]["env"]["VO__MODELS__DIR"] == str(
        boot.root / "var/cache/voice-orchestrator/models"
    )
    assert ["pull", "mistral"] in boot.args("ollama")  # t4-16gb's LLM runs on Ollama
    assert boot.args("setpriv")[0][:3] == [
        "--reuid=voice-orchestrator",
        "--regid=voice-orchestrator",
        "--init-groups",
    ]
    systemctl = boot.args("systemctl")
    assert ["enable", "voice-orchestrator.service"] in systemctl
    assert ["restart", "voice-orchestrator.service"] in systemctl

    # metadata only with its header; the secret and the code with the VM's token
    flavours = {flavour for path, flavour in host_vm.gce.requests if "computeMetadata" in path}
    assert flavours == {"Google"}
    assert any(path.endswith("/secrets/vo-gateway-host-key/versions/latest:access")
               for path, _ in host_vm.gce.requests)  # fmt: skip

    # the next boot: nothing fetched or installed again, the service restarted
    assert again.rc == 0, again.output
    assert "source source/voice-orchestrator-0123abcd.tar.gz already installed" in again.output
    assert sum(1 for p, _ in host_vm.gce.requests if p.startswith("/storage/")) == 1
    assert again.args("ubuntu-drivers") == []
    assert again.args("apt-get") == []
    assert ["restart", "voice-orchestrator.service"] in again.args("systemctl")


async def test_personaplex_gets_the_hf_token_from_secret_manager(tmp_path: Path) -> None:
    vm = Vm(tmp_path, "host", {"vo-profile": "a100-40gb", "vo-hf-token-secret": "vo-hf"})
    server = await started(vm)
    try:
        boot = await vm.boot(server)
    finally:
        await server.close()
    assert boot.rc == 0, boot.output
    assert (boot.etc / "server.env").read_text() == (
        f"VO_GATEWAY_KEYS={HOST_KEY}\nHF_TOKEN=hf_tok\n"
    )
    assert boot.args("git")[0][:3] == ["clone", "--depth", "1"]
    install = [c for c in calls(boot.log) if c["args"][2:4] == ["install", "personaplex"]]
    assert len(install) == 1
    assert "--weights" in install[0]["args"]
    assert install[0]["env"]["HF_TOKEN"] == "hf_tok"  # in its environment ...
    assert not [c for c in calls(boot.log) if "hf_tok" in " ".join(c["args"])]  # ... only


@pytest.mark.parametrize("bridge", [False, True])
async def test_the_gateway_boot_writes_its_unit_config_keys_and_caddy(
    tmp_path: Path, bridge: bool
) -> None:
    vm = Vm(tmp_path, "gateway", {
        "vo-domain": "tutor.example.com",
        "vo-host-name": "vo-gpu-host",
        "vo-host-zone": "us-central1-a",
        "vo-host-ip": "127.0.0.1",
        "vo-stop-after-s": "600",
        "vo-bridge": "true" if bridge else "false",
        "vo-usd-per-hour": "0.0168",
        "vo-api-key-secret": "vo-api-key",
        "vo-torch-index-url": "https://download.pytorch.org/whl/cpu",
    })  # fmt: skip
    server = await started(vm)
    port = server.port
    assert port is not None
    vm.gce.attributes["vo-api-port"] = str(port)  # the host's API: here, the fake's /health/live
    try:
        boot = await vm.boot(server)
    finally:
        await server.close()
    assert boot.rc == 0, boot.output

    unit = boot.root / "etc/systemd/system/voice-orchestrator-gateway.service"
    assert unit.read_text() == (DEPLOY / "systemd/voice-orchestrator-gateway.service").read_text()
    gateway_toml = boot.etc / "gateway.toml"
    gateway = load_config(config_file=gateway_toml, environ={}).gateway
    assert (gateway.host, gateway.port, gateway.stop_after_s, gateway.usd_per_hour) == (
        "127.0.0.1",
        11500,
        600.0,
        0.0168,
    )
    provider: Any = gateway.provider
    assert (provider.kind, provider.project, provider.port) == ("gcp", PROJECT, port)
    assert [(i.zone, i.name) for i in provider.instances] == [("us-central1-a", "vo-gpu-host")]
    assert gateway.bridge.enabled is bridge
    env_file = boot.etc / "gateway.env"
    assert env_file.read_text() == f"VO_API_KEYS={API_KEY}\nVO_GATEWAY_HOST_KEY={HOST_KEY}\n"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    caddyfile = (boot.root / "etc/caddy/Caddyfile").read_text()
    assert "tutor.example.com {\n\treverse_proxy 127.0.0.1:11500\n}" in caddyfile

    (venv,) = [c for c in calls(boot.log) if c["name"] == "ensure-venv.sh"]
    assert venv["args"] == ["gateway"]
    assert venv["env"]["VO_TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert boot.args("ubuntu-drivers") == []  # no GPU here
    assert any("caddy" in a for a in boot.args("apt-get") if a[:1] == ["install"])
    systemctl = boot.args("systemctl")
    assert ["enable", "caddy"] in systemctl
    assert ["enable", "voice-orchestrator-gateway.service"] in systemctl
    downloads = [c["args"] for c in calls(boot.log) if c["name"] == "python"]
    assert downloads == ([["-m", "orchestrator", "download", "--profile", "cpu"]] if bridge else [])
    # its first boot waited for the host's server before starting the gateway
    assert ("/health/live", "") in vm.gce.requests
    assert systemctl.index(["enable", "voice-orchestrator-gateway.service"]) > systemctl.index(
        ["enable", "caddy"]
    )


async def test_a_vm_without_a_role_stops_with_a_reason(tmp_path: Path) -> None:
    vm = Vm(tmp_path, "", {})
    del vm.gce.attributes["vo-role"]
    server = await started(vm)
    try:
        boot = await vm.boot(server)
    finally:
        await server.close()
    assert boot.rc == 1
    assert "vo-role is '', not host or gateway" in boot.output
    assert not boot.root.exists()


def test_the_fake_installer_is_the_recording_fake() -> None:
    assert shutil.which("python3") is not None  # the fakes and the script need it
    assert os.access(FAKE, os.X_OK)
