"""deploy/gcp's Terraform, read with python-hcl2: the shapes, the network's exposure, the
gateway's role, and the boot script it hands both VMs.

Terraform itself is not run (its providers come from a registry the tests cannot reach);
these are the properties a wrong edit would silently break."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.tools import GCP, load_hcl

HOST = ("google_compute_instance", "host")
GATEWAY = ("google_compute_instance", "gateway")
GATEWAY_SA = "${google_service_account.gateway.email}"
HOST_SA = "${google_service_account.host.email}"
IAP_RANGE = "35.235.240.0/20"


class Module:
    """Every .tf file of a folder merged: resources by (type, name), variables, locals, outputs."""

    def __init__(self, folder: Path) -> None:
        self.resources: dict[tuple[str, str], dict[str, Any]] = {}
        self.variables: dict[str, dict[str, Any]] = {}
        self.locals: dict[str, Any] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        for path in sorted(folder.glob("*.tf")):
            parsed = load_hcl(path)
            for block in parsed.get("resource", []):
                for kind, named in block.items():
                    for name, body in named.items():
                        self.resources[(kind, name)] = body
            for block in parsed.get("variable", []):
                self.variables.update(block)
            for block in parsed.get("locals", []):
                self.locals.update(block)
            for block in parsed.get("output", []):
                self.outputs.update(block)

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {name: body for (k, name), body in self.resources.items() if k == kind}


@pytest.fixture(scope="module")
def gcp() -> Module:
    return Module(GCP)


def one(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(blocks) == 1, blocks
    return blocks[0]


def test_the_default_gpu_host_is_an_n1_standard_4_with_one_t4(gcp: Module) -> None:
    assert gcp.variables["gpu"]["default"] == "t4"
    assert gcp.locals["gpu"] == "${local.gpus[var.gpu]}"
    t4 = gcp.locals["gpus"]["t4"]
    assert (t4["machine_type"], t4["accelerator"], t4["attach"]) == (
        "n1-standard-4",
        "nvidia-tesla-t4",
        True,
    )
    assert t4["profile"] == "t4-16gb"
    host = gcp.resources[HOST]
    assert host["machine_type"] == "${local.gpu.machine_type}"
    accelerator = one(host["dynamic"])["guest_accelerator"]
    assert accelerator["for_each"] == "${local.gpu.attach ? [1] : []}"
    assert one(accelerator["content"]) == {"type": "${local.gpu.accelerator}", "count": 1}


def test_the_other_shapes_have_their_machine_types(gcp: Module) -> None:
    shapes = {name: row["machine_type"] for name, row in gcp.locals["gpus"].items()}
    assert shapes == {
        "t4": "n1-standard-4",
        "l4": "g2-standard-8",
        "a100-40gb": "a2-highgpu-1g",
        "a100-80gb": "a2-ultragpu-1g",
    }
    for name in shapes:  # the variable's validation lets each through
        assert f'"{name}"' in one(gcp.variables["gpu"]["validation"])["condition"]
    for name, row in gcp.locals["gpus"].items():  # every profile named exists
        assert (GCP.parents[1] / "config" / "profiles" / f"{row['profile']}.toml").is_file(), name


def test_spot_is_optional_and_stops_rather_than_deletes(gcp: Module) -> None:
    assert gcp.variables["spot"]["default"] is False
    scheduling = one(gcp.resources[HOST]["scheduling"])
    assert scheduling["provisioning_model"] == '${var.spot ? "SPOT" : "STANDARD"}'
    assert scheduling["instance_termination_action"] == '${var.spot ? "STOP" : null}'
    assert scheduling["on_host_maintenance"] == "TERMINATE"


def test_the_gpu_host_has_no_public_ip_and_the_gateway_a_static_one(gcp: Module) -> None:
    host_nic = one(gcp.resources[HOST]["network_interface"])
    assert "access_config" not in host_nic
    gateway_nic = one(gcp.resources[GATEWAY]["network_interface"])
    assert one(gateway_nic["access_config"])["nat_ip"] == (
        "${google_compute_address.gateway.address}"
    )
    # with no public IP, the host goes out through NAT (apt, PyPI, the weights)
    assert "google_compute_router_nat" in {kind for kind, _ in gcp.resources}


def test_the_firewall_exposes_only_the_gateways_https_port(gcp: Module) -> None:
    # A network of our own: the default network's allow-all rules do not exist in it.
    (network,) = gcp.of_type("google_compute_network").values()
    assert network["auto_create_subnetworks"] is False
    rules = gcp.of_type("google_compute_firewall")
    assert rules, "no firewall rules"
    ports = gcp.locals["api_port"]
    assert ports == 11400
    for name, rule in rules.items():
        assert rule["direction"] == "INGRESS", name
        assert rule["network"] == "${google_compute_network.vo.id}", name
        allowed = [(a["protocol"], tuple(a["ports"])) for a in rule["allow"]]
        sources = rule.get("source_ranges", [])
        if "0.0.0.0/0" in sources:  # open to the internet: the gateway's 443 and nothing else
            assert rule["target_service_accounts"] == [GATEWAY_SA], name
            assert allowed == [("tcp", ("443",))], name
        elif sources:  # SSH through IAP only
            assert sources == [IAP_RANGE], name
            assert allowed == [("tcp", ("22",))], name
        else:  # by identity: the gateway to the host's API port
            assert rule["source_service_accounts"] == [GATEWAY_SA], name
            assert rule["target_service_accounts"] == [HOST_SA], name
            assert allowed == [("tcp", ("${tostring(local.api_port)}",))], name
    reaching_host = [r for r in rules.values() if HOST_SA in r.get("target_service_accounts", [])]
    assert {tuple(r.get("source_ranges", ())) for r in reaching_host} == {(), (IAP_RANGE,)}


def test_the_gateways_role_is_exactly_the_four_permissions_on_the_gpu_instance(
    gcp: Module,
) -> None:
    (role,) = gcp.of_type("google_project_iam_custom_role").values()
    assert sorted(role["permissions"]) == [
        "compute.instances.get",
        "compute.instances.start",
        "compute.instances.stop",
        "compute.zoneOperations.get",
    ]
    role_ref = "${google_project_iam_custom_role.host_power.id}"
    bindings = {
        (kind, name): body
        for (kind, name), body in gcp.resources.items()
        if isinstance(body, dict) and body.get("role") == role_ref
    }
    on_instance = [
        b for (kind, _), b in bindings.items() if kind == "google_compute_instance_iam_member"
    ]
    assert [b["instance_name"] for b in on_instance] == ["${google_compute_instance.host.name}"]
    # the project-wide binding (operations are not under an instance) excludes every instance
    on_project = [b for (kind, _), b in bindings.items() if kind == "google_project_iam_member"]
    assert [one(b["condition"])["expression"] for b in on_project] == [
        'resource.type != "compute.googleapis.com/Instance"'
    ]
    assert {b["member"] for b in bindings.values()} == {f"serviceAccount:{GATEWAY_SA}"}
    assert set(bindings) == {
        ("google_compute_instance_iam_member", "gateway_host_power"),
        ("google_project_iam_member", "gateway_operations"),
    }


def test_both_vms_boot_with_the_startup_script(gcp: Module) -> None:
    assert gcp.locals["startup"] == '${file("${path.module}/startup.sh")}'
    script = GCP / "startup.sh"
    assert script.is_file() and os.access(script, os.X_OK)
    for vm, role in ((HOST, "host"), (GATEWAY, "gateway")):
        metadata = gcp.resources[vm]["metadata"]
        assert metadata["startup-script"] == "${local.startup}"
        assert metadata["vo-role"] == role
    # every vo-* attribute a VM is given is one the script reads
    text = script.read_text()
    for vm in (HOST, GATEWAY):
        for key in gcp.resources[vm]["metadata"]:
            if key.startswith("vo-"):
                assert f"attr {key}" in text, key


def test_the_outputs_say_the_url_the_key_and_the_monthly_costs(gcp: Module) -> None:
    assert gcp.outputs["gateway_url"]["value"] == "${local.gateway_url}"
    assert "gcloud secrets versions access latest" in gcp.outputs["api_key_command"]["value"]
    assert set(gcp.locals["monthly"]) == {"24/7", "8 h/day", "4 h/day"}
    assert "local.monthly" in gcp.outputs["monthly_cost_usd"]["value"]
