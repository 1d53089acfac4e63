"""deploy/aws's Terraform, read with python-hcl2: the EC2 twins of the GCP VMs."""

from __future__ import annotations

from typing import Any

from tests.deploy.tools import DEPLOY, load_hcl


def blocks(kind: str) -> dict[str, dict[str, Any]]:
    parsed = load_hcl(DEPLOY / "aws" / "main.tf")
    found: dict[str, dict[str, Any]] = {}
    for section in ("resource", "data"):
        for block in parsed.get(section, []):
            for block_kind, named in block.items():
                if block_kind == kind:
                    found.update(named)
    if kind == "variable":
        for block in parsed["variable"]:
            found.update(block)
    return found


def test_the_gpu_host_defaults_to_a_g4dn_xlarge() -> None:
    assert blocks("variable")["host_instance_type"]["default"] == "g4dn.xlarge"
    assert blocks("aws_instance")["host"]["instance_type"] == "${var.host_instance_type}"


def test_the_host_admits_only_the_gateway_and_the_gateway_only_https() -> None:
    groups = blocks("aws_security_group")
    (host_in,) = groups["host"]["ingress"]
    assert (host_in["from_port"], host_in["to_port"]) == (11400, 11400)
    assert host_in["security_groups"] == ["${aws_security_group.gateway.id}"]
    assert "cidr_blocks" not in host_in
    (gateway_in,) = groups["gateway"]["ingress"]
    assert (gateway_in["from_port"], gateway_in["to_port"]) == (443, 443)


def test_the_gateways_role_starts_and_stops_the_host_only() -> None:
    statements = blocks("aws_iam_policy_document")["host_power"]["statement"]
    assert [(s["actions"], s["resources"]) for s in statements] == [
        (["ec2:StartInstances", "ec2:StopInstances"], ["${aws_instance.host.arn}"]),
        (["ec2:DescribeInstances"], ["*"]),
    ]
