"""What Compute Engine's answers mean, without a server: the failure summary and unasked stops."""

from __future__ import annotations

from orchestrator.gateway.providers.base import PowerState
from orchestrator.gateway.providers.gcp_states import (
    STATES,
    Failure,
    StopTracker,
    power_state,
    region_of,
    start_failed,
)

P = PowerState


def test_every_status_of_the_api_enum_has_a_state() -> None:
    from google.cloud import compute_v1

    statuses = {status.name for status in compute_v1.Instance.Status} - {"UNDEFINED_STATUS"}
    assert statuses == set(STATES)
    assert power_state("UNHEARD_OF") is P.UNKNOWN


def test_regions_of_zones() -> None:
    assert region_of("us-central1-a") == "us-central1"
    assert region_of("europe-west4-b") == "europe-west4"


def test_start_failed_is_a_stockout_only_when_every_instance_was_out_of_capacity() -> None:
    out = Failure("a/x", "no room", frozenset({"ZONE_RESOURCE_POOL_EXHAUSTED"}))
    detailed = Failure("b/y", "no room", frozenset({"resource_availability"}))
    quota = Failure("c/z", "quota", frozenset({"QUOTA_EXCEEDED"}))

    assert start_failed([out, detailed]).stockout is True
    assert start_failed([out, quota]).stockout is False
    assert start_failed([out, Failure("d/w", "not tried")]).stockout is False
    assert start_failed([out, quota]).reason == (
        "no gcp instance could start: a/x: no room; c/z: quota"
    )


def test_an_unasked_stop_is_noted_until_the_gateway_acts() -> None:
    tracker = StopTracker()
    assert tracker.see("z/a", P.RUNNING, spot=True) == ""
    assert "preempted" in tracker.see("z/a", P.STOPPING, spot=True)
    assert "preempted" in tracker.see("z/a", P.STOPPED, spot=True)
    tracker.asked_start("z/a")
    assert tracker.see("z/a", P.STOPPED, spot=True) == ""


def test_asked_stops_and_failed_starts_are_no_preemption() -> None:
    tracker = StopTracker()
    tracker.see("z/a", P.RUNNING, spot=False)
    tracker.asked_stop("z/a")
    assert tracker.see("z/a", P.STOPPED, spot=False) == ""

    tracker.asked_start("z/b")
    tracker.see("z/b", P.STARTING, spot=False)
    tracker.did_not_start("z/b")
    assert tracker.see("z/b", P.STOPPED, spot=False) == ""
    tracker.see("z/b", P.RUNNING, spot=False)
    assert tracker.see("z/b", P.STOPPED, spot=False) == "stopped outside the gateway"
