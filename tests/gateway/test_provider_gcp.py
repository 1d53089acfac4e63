"""The gcp provider through the real google-cloud-compute client, against a Compute Engine peer.

``tests/peers/compute_engine.py`` stands for the API; the client reaches it through
``api_endpoint`` with anonymous credentials, and looking for real credentials fails the test,
so nothing here reaches Google.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import google.auth
import pytest

from orchestrator.config.gateway import GcpInstance, GcpProvider
from orchestrator.gateway.errors import HostStartFailed, ProviderError
from orchestrator.gateway.providers.base import HostView, PowerState
from orchestrator.gateway.providers.gcp import GcpHost
from tests.peers.compute_engine import ComputeEngine, serving

PROJECT = "tutor-gpu"
A = ("us-central1-a", "gpu-a")
A2 = ("us-central1-b", "gpu-a2")  # a twin in A's region
B = ("us-east4-c", "gpu-b")
REAL_DEFAULT = google.auth.default

Make = Callable[..., GcpHost]


@pytest.fixture(autouse=True)
def no_real_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a test looked for real Google credentials")

    monkeypatch.setattr(google.auth, "default", refuse)
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)


@pytest.fixture
async def compute() -> AsyncIterator[ComputeEngine]:
    async with serving(ComputeEngine(PROJECT)) as engine:
        yield engine


@pytest.fixture
async def make(compute: ComputeEngine) -> AsyncIterator[Make]:
    made: list[GcpHost] = []

    def build(*instances: tuple[str, str], **settings: Any) -> GcpHost:
        config = GcpProvider(
            project=PROJECT,
            instances=tuple(GcpInstance(zone=zone, name=name) for zone, name in instances),
            api_endpoint=compute.url,
            **settings,
        )
        host = GcpHost(config, retry_initial_s=0.05)
        made.append(host)
        return host

    yield build
    for host in made:
        await host.close()


def named(instance: tuple[str, str]) -> str:
    return "/".join(instance)


async def test_a_stopped_host_starts_and_answers_on_its_private_address(
    compute: ComputeEngine, make: Make
) -> None:
    compute.add(*A, network_ip="10.128.0.7")
    host = make(A)

    assert (await host.status()).state is PowerState.STOPPED
    view = await host.start()

    assert view == HostView(
        PowerState.RUNNING, "http://10.128.0.7:11400", named(A), detail="RUNNING"
    )
    assert compute.starts == {named(A): 1}
    # the start's operation took two looks, each a zoneOperations.wait at the same endpoint
    assert len(compute.posted("/wait")) == 2
    assert await host.status() == view


async def test_the_external_address_when_asked(compute: ComputeEngine, make: Make) -> None:
    compute.add(*A, status="RUNNING", nat_ip="34.66.1.9")
    host = make(A, use_external_ip=True, port=8443)

    assert (await host.status()).url == "http://34.66.1.9:8443"


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("PROVISIONING", PowerState.STARTING),
        ("STAGING", PowerState.STARTING),
        ("REPAIRING", PowerState.STARTING),
        ("RUNNING", PowerState.RUNNING),
        ("STOPPING", PowerState.STOPPING),
        ("SUSPENDING", PowerState.STOPPING),
        ("TERMINATED", PowerState.STOPPED),
        ("STOPPED", PowerState.STOPPED),
        ("SUSPENDED", PowerState.STOPPED),
        ("SOMETHING_NEW", PowerState.UNKNOWN),
    ],
)
async def test_each_instance_status_maps_to_a_power_state(
    compute: ComputeEngine, make: Make, status: str, state: PowerState
) -> None:
    compute.add(*A, status=status)

    view = await make(A).status()

    assert (view.state, view.detail, view.instance) == (state, status, named(A))
    assert (view.url is not None) is (state is PowerState.RUNNING)


async def test_stop_waits_for_the_instance_to_stop(compute: ComputeEngine, make: Make) -> None:
    compute.add(*A, status="RUNNING")
    host = make(A)

    view = await host.stop()

    assert (view.state, view.url, view.detail) == (PowerState.STOPPED, None, "TERMINATED")
    assert compute.instances[A].status == "TERMINATED"
    assert len(compute.posted("/stop")) == 1
    assert (await host.stop()).state is PowerState.STOPPED  # a second stop asks nothing
    assert len(compute.posted("/stop")) == 1


async def test_starting_a_running_host_starts_nothing(compute: ComputeEngine, make: Make) -> None:
    compute.add(*A, status="RUNNING")

    view = await make(A).start()

    assert view.state is PowerState.RUNNING
    assert compute.posted("/start") == []


async def test_a_stockout_falls_back_to_the_next_zone_which_status_and_stop_then_use(
    compute: ComputeEngine, make: Make
) -> None:
    compute.add(*A)
    compute.add(*B, network_ip="10.150.0.3")
    compute.stockout.add(A[0])
    host = make(A, B)

    view = await host.start()

    assert (view.state, view.instance, view.url) == (
        PowerState.RUNNING,
        named(B),
        "http://10.150.0.3:11400",
    )
    assert compute.starts == {named(A): 1, named(B): 1}
    assert compute.instances[A].status == "TERMINATED"
    assert (await host.status()).instance == named(B)
    stopped = await host.stop()
    assert (stopped.state, stopped.instance) == (PowerState.STOPPED, named(B))
    assert [call.path.split("/")[-2] for call in compute.posted("/stop")] == ["gpu-b"]


async def test_a_stockout_answered_at_once_is_not_retried_but_falls_back(
    compute: ComputeEngine, make: Make
) -> None:
    compute.add(*A)
    compute.add(*B)
    compute.stockout_at_once.add(A[0])

    view = await make(A, B).start()

    assert view.instance == named(B)
    assert [call.path.split("/")[-2] for call in compute.posted("/start")] == ["gpu-a", "gpu-b"]


async def test_every_zone_out_of_capacity_fails_with_each_reason(
    compute: ComputeEngine, make: Make
) -> None:
    compute.add(*A)
    compute.add(*B)
    compute.stockout |= {A[0], B[0]}
    host = make(A, B)

    with pytest.raises(HostStartFailed) as caught:
        await host.start()

    assert caught.value.stockout is True
    reason = caught.value.reason
    assert f"{named(A)}: ZONE_RESOURCE_POOL_EXHAUSTED" in reason
    assert f"{named(B)}: ZONE_RESOURCE_POOL_EXHAUSTED" in reason
    assert f"zones/{B[0]}' does not have enough resources" in reason
    # the host is the preferred instance again, stopped, and no preemption is imagined
    assert await host.status() == HostView(PowerState.STOPPED, None, named(A), "TERMINATED")


async def test_a_quota_skips_the_twins_of_its_region(compute: ComputeEngine, make: Make) -> None:
    for instance in (A, A2, B):
        compute.add(*instance)
    compute.quota.add(A[0])
    host = make(A, A2, B)

    view = await host.start()

    assert view.instance == named(B)
    assert compute.starts == {named(A): 1, named(B): 1}  # A2 shares A's regional quota


async def test_quota_everywhere_is_no_stockout(compute: ComputeEngine, make: Make) -> None:
    for instance in (A, A2):
        compute.add(*instance)
    compute.quota.add(A[0])

    with pytest.raises(HostStartFailed) as caught:
        await make(A, A2).start()

    assert caught.value.stockout is False
    assert "QUOTA_EXCEEDED: Quota 'NVIDIA_L4_GPUS' exceeded" in caught.value.reason
    assert f"{named(A2)}: not tried: quota exceeded in its region" in caught.value.reason


async def test_a_broken_instance_fails_without_trying_the_twins(
    compute: ComputeEngine, make: Make
) -> None:
    compute.add(*A)
    compute.add(*B)
    compute.no_disk.add(A[0])

    with pytest.raises(HostStartFailed) as caught:
        await make(A, B).start()

    assert caught.value.stockout is False
    assert caught.value.reason.startswith(f"no gcp instance could start: {named(A)}: ")
    assert "RESOURCE_NOT_FOUND: The resource 'projects/tutor-gpu/zones/" in caught.value.reason
    assert compute.starts == {named(A): 1}


async def test_a_host_still_stopping_is_not_started_yet(compute: ComputeEngine, make: Make) -> None:
    compute.add(*A, status="STOPPING")

    with pytest.raises(HostStartFailed) as caught:
        await make(A).start()

    assert "us-central1-a/gpu-a is still stopping (STOPPING)" in caught.value.reason
    assert (caught.value.stockout, caught.value.retry_after_s) == (False, 10)
    assert compute.posted("/start") == []


async def test_an_unknown_instance_is_a_provider_error(compute: ComputeEngine, make: Make) -> None:
    compute.add(*A)
    host = make(A, ("us-east4-c", "typo"))

    with pytest.raises(ProviderError) as caught:
        await host.status()

    message = str(caught.value)
    assert "instances.get us-east4-c/typo: no such instance" in message
    assert f"project {PROJECT!r}, zone 'us-east4-c'" in message
    assert "(404 GET " in message
    assert (
        "The resource 'projects/tutor-gpu/zones/us-east4-c/instances/typo' was not found" in message
    )


async def test_a_refused_call_names_the_call_and_the_apis_words(
    compute: ComputeEngine, make: Make
) -> None:
    compute.add(*A)
    compute.deny.add(named(A))

    with pytest.raises(ProviderError) as caught:
        await make(A).start()

    message = str(caught.value)
    assert message.startswith(f"gcp instances.get {named(A)} failed: 403 GET ")
    assert "Required 'compute.instances.get' permission" in message and "[forbidden]" in message


@pytest.mark.parametrize(
    ("spot", "note"),
    [(True, "preempted: a Spot instance"), (False, "stopped outside the gateway")],
)
async def test_a_host_stopped_behind_our_back_is_reported(
    compute: ComputeEngine, make: Make, spot: bool, note: str
) -> None:
    compute.add(*A, status="RUNNING", spot=spot)
    host = make(A)
    assert (await host.status()).state is PowerState.RUNNING

    compute.preempt(*A)
    view = await host.status()

    assert view.state is PowerState.STOPPED
    assert view.detail.startswith("TERMINATED (") and note in view.detail
    assert note in (await host.status()).detail  # it stays said until we act
    await host.start()
    await host.stop()
    assert (await host.status()).detail == "TERMINATED"  # our own stop is no preemption


async def test_a_retried_start_reuses_its_request_id_and_starts_once(
    compute: ComputeEngine, make: Make
) -> None:
    compute.add(*A)
    compute.lose_next.add(("start", named(A)))  # applied, then answered 503
    host = make(A)

    view = await host.start()

    assert view.state is PowerState.RUNNING
    first, retry = compute.posted("/start")
    assert first.request_id == retry.request_id
    assert compute.starts == {named(A): 1}
    await host.stop()
    await host.start()
    ids = [call.request_id for call in compute.posted("/start") + compute.posted("/stop")]
    assert all(uuid.UUID(str(request_id)).version == 4 for request_id in ids)
    assert len(set(ids)) == 3  # one per logical call: start (twice sent), stop, start


async def test_a_restarted_gateway_adopts_the_fallback_that_runs(
    compute: ComputeEngine, make: Make
) -> None:
    compute.add(*A)
    compute.add(*B)
    compute.stockout.add(A[0])
    assert (await make(A, B).start()).instance == named(B)

    again = make(A, B)
    view = await again.status()

    assert (view.state, view.instance) == (PowerState.RUNNING, named(B))
    assert (await again.start()).instance == named(B)
    assert compute.starts == {named(A): 1, named(B): 1}  # nothing started twice


async def test_a_restarted_gateway_picks_up_a_booting_twin(
    compute: ComputeEngine, make: Make
) -> None:
    compute.add(*A)
    compute.add(*B, status="STAGING")

    view = await make(A, B).status()

    assert (view.state, view.instance, view.url) == (PowerState.STARTING, named(B), None)


async def test_an_operation_that_outlasts_the_timeout_reports_the_booting_host(
    compute: ComputeEngine, make: Make
) -> None:
    compute.add(*A)
    compute.stall.add(A[0])
    host = make(A, operation_timeout_s=0.2)

    view = await host.start()

    assert (view.state, view.detail) == (PowerState.STARTING, "PROVISIONING")
    assert len(compute.posted("/wait")) >= 1


async def test_without_an_endpoint_it_uses_application_default_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # a missing key file fails at once, before any look at a metadata server
    monkeypatch.setattr(google.auth, "default", REAL_DEFAULT)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    host = GcpHost(GcpProvider(project=PROJECT, instances=(GcpInstance(zone=A[0], name=A[1]),)))

    with pytest.raises(ProviderError) as caught:
        await host.status()

    assert "no Application Default Credentials" in str(caught.value)
    assert "missing.json" in str(caught.value)
    await host.close()
