"""deploy/docker: the compose file for one GPU box and what it points at (Docker itself is not
run here: the tests have no daemon, no GPU and no registry)."""

from __future__ import annotations

from typing import Any

import yaml

from orchestrator.config import load_config
from tests.deploy.tools import DEPLOY, ROOT

DOCKER = DEPLOY / "docker"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    return loaded


def test_the_host_reserves_the_gpu_as_compose_documents_it() -> None:
    host = compose()["services"]["host"]
    assert host["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    ]
    assert "ports" not in host  # reached by the gateway and Prometheus only
    assert (ROOT / host["build"]["dockerfile"]).is_file()
    assert "BAKE_MODELS" in host["build"]["args"]
    dockerfile = (ROOT / host["build"]["dockerfile"]).read_text()
    assert "FROM ${CUDA_IMAGE}" in dockerfile and "cudnn-runtime" in dockerfile


def test_only_the_gateway_and_grafana_are_published_on_loopback() -> None:
    services = compose()["services"]
    published = {name: s["ports"] for name, s in services.items() if "ports" in s}
    assert published == {"gateway": ["127.0.0.1:11500:11500"], "grafana": ["127.0.0.1:3000:3000"]}


def test_the_gateway_config_is_valid_and_points_at_the_host_service() -> None:
    gateway = load_config(config_file=DOCKER / "gateway.toml", environ={}).gateway
    provider: Any = gateway.provider
    assert (provider.kind, provider.url) == ("command", "http://host:11400")
    service = compose()["services"]["gateway"]
    assert "./gateway.toml:/etc/voice-orchestrator/gateway.toml:ro" in service["volumes"]
    assert (ROOT / service["build"]["dockerfile"]).is_file()


def test_grafana_gets_the_dashboard_and_prometheus_scrapes_the_host() -> None:
    grafana = compose()["services"]["grafana"]
    assert "../grafana:/var/lib/grafana/dashboards:ro" in grafana["volumes"]
    assert (DEPLOY / "grafana" / "voice-orchestrator.json").is_file()
    provider = yaml.safe_load(
        (DOCKER / "grafana/provisioning/dashboards/voice-orchestrator.yml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    scrape = yaml.safe_load((DOCKER / "prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape["static_configs"][0]["targets"] == ["host:11400"]
    host_env = compose()["services"]["host"]["environment"]
    assert "/metrics" in host_env["VO__SERVER__OPEN_PATHS"]  # Prometheus sends no key
