"""The EC2 provider against moto's EC2, in process (``mock_aws``): nothing leaves the machine.

boto3 builds, signs and sends each request and parses each answer as it would for AWS; moto takes
the request where botocore would hand it to the network. (moto's stand-alone HTTP server would
carry it over a socket too, but it needs ``moto[server]``, which this environment does not have.)

moto cannot run out of capacity, refuse a quota, or show an instance pending or stopping: its
instances switch at once. The ``Faults`` below inject those answers into our provider's own boto3
session with botocore's event hooks; each test that uses one says what it injects.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.loaders import Loader, create_loader
from moto import mock_aws

from orchestrator.config.gateway import AwsProvider
from orchestrator.gateway.errors import HostStartFailed, ProviderError
from orchestrator.gateway.providers.aws import AwsHost
from orchestrator.gateway.providers.base import PowerState
from tests.conftest import free_port

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake keys in the environment, and every other source of credentials switched off."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


@pytest.fixture(scope="module")
def ec2() -> Iterator[Any]:
    """moto's EC2 for the module (starting a mock resets every moto backend, which is slow), and
    the tests' own client on it, to set the scene and look behind the provider. Each test makes
    its own instances, so none sees another's."""
    with mock_aws():
        yield boto3.client("ec2", region_name=REGION)


@pytest.fixture(scope="module")
def models() -> Loader:
    """botocore's loader of service models, shared so that each test's session does not parse
    EC2's large model again."""
    return create_loader()


def launch(ec2: Any, count: int, **options: Any) -> list[str]:
    """``count`` instances from a moto AMI, stopped, as the gateway finds its host at rest."""
    amazon_linux = [{"Name": "name", "Values": ["amzn2-ami-hvm-*"]}]
    image = ec2.describe_images(Owners=["amazon"], Filters=amazon_linux)["Images"][0]["ImageId"]
    reply = ec2.run_instances(
        ImageId=image, MinCount=count, MaxCount=count, InstanceType="g5.xlarge", **options
    )
    ids = [instance["InstanceId"] for instance in reply["Instances"]]
    ec2.stop_instances(InstanceIds=ids)
    return ids


def describe(ec2: Any, iid: str) -> dict[str, Any]:
    instance: dict[str, Any] = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0][
        "Instances"
    ][0]
    return instance


def state(ec2: Any, iid: str) -> str:
    return str(describe(ec2, iid)["State"]["Name"])


class Faults:
    """EC2 answers moto cannot give, injected with botocore's event hooks into the provider's
    session. A refusal answers StartInstances or StopInstances before the request leaves
    botocore (moto never sees it); a shown state rewrites what DescribeInstances parsed."""

    def __init__(self, session: boto3.session.Session) -> None:
        self.refuse_start: dict[str, tuple[str, str]] = {}  # id -> (code, message)
        self.refuse_stop: list[tuple[str, str]] = []  # answers for the next StopInstances
        self.accept_without_starting: set[str] = set()
        self.shown: dict[str, list[tuple[str, str]]] = {}  # id -> (state, reason code) per call
        self.start_calls: list[list[str]] = []
        events = session.events
        events.register("before-call.ec2.StartInstances", self._start)
        events.register("before-call.ec2.StopInstances", self._stop)
        events.register("after-call.ec2.DescribeInstances", self._describe)

    def _start(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        ids = _ids(params)
        self.start_calls.append(ids)
        refused = [self.refuse_start[iid] for iid in ids if iid in self.refuse_start]
        if refused:
            return _error(*refused[0])
        if set(ids) <= self.accept_without_starting:
            starting = [{"InstanceId": iid, "CurrentState": {"Name": "pending"}} for iid in ids]
            return AWSResponse("", 200, {}, None), {"StartingInstances": starting}
        return None

    def _stop(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        return _error(*self.refuse_stop.pop(0)) if self.refuse_stop else None

    def _describe(self, parsed: dict[str, Any], **_: Any) -> None:
        for reservation in parsed.get("Reservations", []):
            for instance in reservation["Instances"]:
                queue = self.shown.get(instance["InstanceId"])
                if queue:
                    name, code = queue.pop(0) if len(queue) > 1 else queue[0]
                    instance["State"] = {"Name": name}
                    message = f"{code}: injected" if code else ""
                    instance["StateReason"] = {"Code": code, "Message": message}


def _ids(params: dict[str, Any]) -> list[str]:
    return [value for key, value in params["body"].items() if key.startswith("InstanceId.")]


def _error(code: str, message: str) -> tuple[AWSResponse, dict[str, Any]]:
    body = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {}}
    return AWSResponse("", 400, {}, None), body


@pytest.fixture
def session(models: Loader) -> boto3.session.Session:
    """The provider's own session, with the shared models: the faults hook into it."""
    core = botocore.session.get_session()
    core.register_component("data_loader", models)
    return boto3.session.Session(botocore_session=core)


@pytest.fixture
def faults(session: boto3.session.Session) -> Faults:
    return Faults(session)


def host(
    ids: list[str], session: boto3.session.Session, settle_s: float = 15.0, **options: Any
) -> AwsHost:
    config = AwsProvider(region=REGION, instance_ids=tuple(ids), **options)
    return AwsHost(config, session=session, poll_s=0.01, settle_s=settle_s)


async def test_start_runs_the_preferred_instance_and_gives_its_private_url(
    ec2: Any, session: boto3.session.Session
) -> None:
    ids = launch(ec2, 2)
    aws = host(ids, session)
    assert (await aws.status()).state is PowerState.STOPPED

    view = await aws.start()
    assert view.state is PowerState.RUNNING
    assert view.instance == ids[0]
    assert view.url == f"http://{describe(ec2, ids[0])['PrivateIpAddress']}:11400"
    assert (state(ec2, ids[0]), state(ec2, ids[1])) == ("running", "stopped")
    assert (await aws.status()).url == view.url
    await aws.close()


async def test_use_public_ip_gives_the_public_address(
    ec2: Any, session: boto3.session.Session
) -> None:
    ids = launch(ec2, 1)
    aws = host(ids, session, use_public_ip=True, port=8080)
    view = await aws.start()
    assert view.url == f"http://{describe(ec2, ids[0])['PublicIpAddress']}:8080"
    await aws.close()


async def test_stop_stops_it(ec2: Any, session: boto3.session.Session) -> None:
    ids = launch(ec2, 1)
    aws = host(ids, session)
    await aws.start()
    view = await aws.stop()
    assert (view.state, view.url, view.instance) == (PowerState.STOPPED, None, ids[0])
    assert state(ec2, ids[0]) == "stopped"
    again = await aws.stop()
    assert again.state is PowerState.STOPPED
    assert again.detail.startswith("already stopped")
    assert "outside the gateway" not in (await aws.status()).detail
    await aws.close()


async def test_a_stop_that_describe_has_not_caught_up_with_is_ours(
    ec2: Any, session: boto3.session.Session, faults: Faults
) -> None:
    """Injected: after StopInstances, describe still shows the instance running once."""
    ids = launch(ec2, 1)
    aws = host(ids, session)
    await aws.start()
    faults.shown[ids[0]] = [
        ("running", ""),
        ("running", ""),
        ("stopped", "Client.UserInitiatedShutdown"),
    ]
    assert (await aws.stop()).state is PowerState.STOPPED
    view = await aws.status()
    assert view.state is PowerState.STOPPED
    assert "outside the gateway" not in view.detail
    await aws.close()


async def test_stop_stops_every_configured_instance_that_runs(
    ec2: Any, session: boto3.session.Session
) -> None:
    """Both twins run (someone started the second by hand): the preferred one is reported, and
    a stop leaves none running to be paid for."""
    ids = launch(ec2, 2)
    ec2.start_instances(InstanceIds=ids)
    aws = host(ids, session)
    assert (await aws.status()).instance == ids[0]
    view = await aws.stop()
    assert (view.state, view.instance) == (PowerState.STOPPED, ids[0])
    assert (state(ec2, ids[0]), state(ec2, ids[1])) == ("stopped", "stopped")
    await aws.close()


async def test_start_of_a_running_instance_is_idempotent(
    ec2: Any, session: boto3.session.Session, faults: Faults
) -> None:
    """Injected: nothing; the hooks only count StartInstances calls."""
    ids = launch(ec2, 1)
    aws = host(ids, session)
    first = await aws.start()
    second = await aws.start()
    assert second.state is PowerState.RUNNING
    assert second.url == first.url
    assert second.detail.startswith("already running")
    assert faults.start_calls == [[ids[0]]]
    await aws.close()


@pytest.mark.parametrize(
    ("shown", "expected"),
    [
        ("pending", PowerState.STARTING),
        ("stopping", PowerState.STOPPING),
        ("shutting-down", PowerState.STOPPING),
        ("stopped", PowerState.STOPPED),
        ("running", PowerState.RUNNING),
        ("terminated", PowerState.STOPPED),
    ],
)
async def test_status_maps_each_ec2_state(
    ec2: Any, session: boto3.session.Session, faults: Faults, shown: str, expected: PowerState
) -> None:
    """Injected: the state DescribeInstances reports (moto has no pending or stopping)."""
    ids = launch(ec2, 1)
    faults.shown[ids[0]] = [(shown, "")]
    view = await host(ids, session).status()
    assert view.state is expected
    assert view.instance == ids[0]
    assert view.detail.startswith(shown)
    assert (view.url is not None) == (shown == "running")


async def test_start_waits_through_pending(
    ec2: Any, session: boto3.session.Session, faults: Faults
) -> None:
    """Injected: what the provider's describes show. Its first look before the start sees it
    stopped; after the start, describe lags behind once (still stopped by the user, the old
    reason), then shows pending twice, then running."""
    ids = launch(ec2, 1)
    aws = host(ids, session)
    stopped_by_user = ("stopped", "Client.UserInitiatedShutdown")
    faults.shown[ids[0]] = [
        stopped_by_user,
        stopped_by_user,
        ("pending", ""),
        ("pending", ""),
        ("running", ""),
    ]
    view = await aws.start()
    assert view.state is PowerState.RUNNING
    assert faults.shown[ids[0]] == [("running", "")]  # every earlier answer was read
    await aws.close()


async def test_the_reason_of_an_earlier_stop_is_not_read_as_a_failed_start(
    ec2: Any, session: boto3.session.Session, faults: Faults
) -> None:
    """Injected: a Spot instance was stopped by EC2; after the start, describe still shows that
    stop (and its Server.* reason) twice, then running."""
    ids = launch(ec2, 1)
    spot_stop = ("stopped", "Server.SpotInstanceShutdown")
    faults.shown[ids[0]] = [spot_stop, spot_stop, spot_stop, ("running", "")]
    view = await host(ids, session).start()
    assert view.state is PowerState.RUNNING
    assert faults.shown[ids[0]] == [("running", "")]


async def test_an_instance_still_stopped_once_describe_has_settled_did_not_start(
    ec2: Any, session: boto3.session.Session, faults: Faults
) -> None:
    """Injected: StartInstances is accepted without starting it, and describe keeps showing the
    instance stopped by the user, as before the start."""
    ids = launch(ec2, 1)
    faults.accept_without_starting.add(ids[0])
    faults.shown[ids[0]] = [("stopped", "Client.UserInitiatedShutdown")]
    aws = host(ids, session, settle_s=0.05, operation_timeout_s=5.0)
    with pytest.raises(HostStartFailed) as caught:
        await aws.start()
    assert caught.value.stockout is False
    assert caught.value.reason == (
        f"no EC2 instance could start in {REGION}: "
        f"{ids[0]}: went stopped while starting: Client.UserInitiatedShutdown: injected"
    )


async def test_an_instance_pending_past_the_timeout_fails_and_no_twin_is_started(
    ec2: Any, session: boto3.session.Session, faults: Faults
) -> None:
    """Injected: after its start, the first instance stays pending forever."""
    ids = launch(ec2, 2)
    aws = host(ids, session, operation_timeout_s=0.2)
    faults.shown[ids[0]] = [("stopped", "Client.UserInitiatedShutdown"), ("pending", "")]
    with pytest.raises(HostStartFailed) as caught:
        await aws.start()
    assert caught.value.stockout is False
    assert f"{ids[0]} is still pending 0.2 s after it was asked to start" in caught.value.reason
    assert faults.start_calls == [[ids[0]]]
    await aws.close()


async def test_a_stockout_on_the_first_falls_back_to_the_second(
    ec2: Any, session: boto3.session.Session, faults: Faults
) -> None:
    """Injected: StartInstances of the first instance is refused InsufficientInstanceCapacity."""
    ids = launch(ec2, 2)
    faults.refuse_start[ids[0]] = ("InsufficientInstanceCapacity", "no g5.xlarge in us-east-1a")
    aws = host(ids, session)
    view = await aws.start()
    assert (view.state, view.instance) == (PowerState.RUNNING, ids[1])
    assert view.url == f"http://{describe(ec2, ids[1])['PrivateIpAddress']}:11400"
    assert faults.start_calls == [[ids[0]], [ids[1]]]
    assert state(ec2, ids[0]) == "stopped"
    assert (await aws.status()).instance == ids[1]
    await aws.close()


@pytest.mark.parametrize("twins", [1, 2])
async def test_a_start_accepted_then_dropped_for_capacity_is_a_stockout(
    ec2: Any, session: boto3.session.Session, faults: Faults, twins: int
) -> None:
    """Injected: StartInstances of the first is accepted without starting it, and describe then
    shows it stopped with the reason Server.InsufficientInstanceCapacity, as EC2 can."""
    ids = launch(ec2, twins)
    faults.accept_without_starting.add(ids[0])
    faults.shown[ids[0]] = [
        ("stopped", "Client.UserInitiatedShutdown"),
        ("stopped", "Server.InsufficientInstanceCapacity"),
    ]
    aws = host(ids, session)
    if twins == 1:
        with pytest.raises(HostStartFailed) as caught:
            await aws.start()
        assert caught.value.stockout is True
        assert f"{ids[0]}: went stopped while starting: Server.Insufficient" in caught.value.reason
    else:
        view = await aws.start()
        assert (view.state, view.instance) == (PowerState.RUNNING, ids[1])
    assert faults.start_calls == [[iid] for iid in ids]
    await aws.close()


@pytest.mark.parametrize(
    ("second", "stockout"),
    [
        (("InsufficientInstanceCapacity", "no g5.xlarge in us-east-1b"), True),
        (("VcpuLimitExceeded", "You have requested more vCPU capacity than allowed"), False),
    ],
)
async def test_when_every_instance_fails_each_reason_is_listed(
    ec2: Any,
    session: boto3.session.Session,
    faults: Faults,
    second: tuple[str, str],
    stockout: bool,
) -> None:
    """Injected: StartInstances of both instances is refused."""
    ids = launch(ec2, 2)
    faults.refuse_start[ids[0]] = ("InsufficientInstanceCapacity", "no g5.xlarge in us-east-1a")
    faults.refuse_start[ids[1]] = second
    with pytest.raises(HostStartFailed) as caught:
        await host(ids, session).start()
    assert caught.value.stockout is stockout
    assert caught.value.reason == (
        f"no EC2 instance could start in {REGION}: "
        f"{ids[0]}: InsufficientInstanceCapacity: no g5.xlarge in us-east-1a; "
        f"{ids[1]}: {second[0]}: {second[1]}"
    )


async def test_a_refused_permission_is_a_provider_error_and_no_twin_is_tried(
    ec2: Any, session: boto3.session.Session, faults: Faults
) -> None:
    """Injected: StartInstances of the first instance is refused UnauthorizedOperation."""
    ids = launch(ec2, 2)
    faults.refuse_start[ids[0]] = ("UnauthorizedOperation", "You are not authorized")
    with pytest.raises(ProviderError) as caught:
        await host(ids, session).start()
    assert str(caught.value) == (
        f"EC2 start_instances({ids[0]}) in {REGION} failed: "
        "UnauthorizedOperation: You are not authorized"
    )
    assert faults.start_calls == [[ids[0]]]
    assert state(ec2, ids[1]) == "stopped"


async def test_an_unknown_instance_id_is_a_provider_error(
    ec2: Any, session: boto3.session.Session
) -> None:
    ids = launch(ec2, 1)
    unknown = "i-0123456789abcdef0"
    aws = host([ids[0], unknown], session)
    for call in (aws.status, aws.start, aws.stop):
        with pytest.raises(ProviderError) as caught:
            await call()
        message = str(caught.value)
        assert message.startswith(f"EC2 describe_instances({ids[0]}, {unknown}) in {REGION}")
        assert f"InvalidInstanceID.NotFound: The instance ID '{unknown}' does not exist" in message
    assert state(ec2, ids[0]) == "stopped"


async def test_a_fresh_provider_adopts_a_running_fallback(
    ec2: Any, session: boto3.session.Session, faults: Faults
) -> None:
    """The gateway restarted while a twin ran: it is reported, not started beside another."""
    ids = launch(ec2, 2)
    ec2.start_instances(InstanceIds=[ids[1]])
    aws = host(ids, session)
    view = await aws.status()
    assert (view.state, view.instance) == (PowerState.RUNNING, ids[1])
    started = await aws.start()
    assert started.instance == ids[1]
    assert started.detail.startswith("already running")
    assert faults.start_calls == []
    assert state(ec2, ids[0]) == "stopped"
    await aws.stop()
    assert state(ec2, ids[1]) == "stopped"
    await aws.close()


async def test_a_terminated_instance_is_reported_and_never_started(
    ec2: Any, session: boto3.session.Session, faults: Faults
) -> None:
    ids = launch(ec2, 2)
    ec2.terminate_instances(InstanceIds=[ids[0]])
    alone = host(ids[:1], session)
    view = await alone.status()
    assert view.state is PowerState.STOPPED
    assert view.detail.startswith("terminated")
    with pytest.raises(HostStartFailed) as caught:
        await alone.start()
    assert caught.value.stockout is False
    assert caught.value.reason.endswith(f"{ids[0]}: terminated: it can never start again")
    assert faults.start_calls == []

    view = await host(ids, session).start()
    assert (view.state, view.instance) == (PowerState.RUNNING, ids[1])


@pytest.mark.parametrize("spot", [False, True])
async def test_an_instance_stopped_outside_the_gateway_says_so(
    ec2: Any, session: boto3.session.Session, spot: bool
) -> None:
    market = {"InstanceMarketOptions": {"MarketType": "spot"}} if spot else {}
    ids = launch(ec2, 1, **market)
    aws = host(ids, session)
    await aws.start()
    ec2.stop_instances(InstanceIds=ids)
    view = await aws.status()
    assert view.state is PowerState.STOPPED
    assert "stopped outside the gateway" in view.detail
    assert ("spot interruption" in view.detail) is spot
    await aws.close()


async def test_stop_of_a_pending_instance_is_retried_once_it_runs(
    ec2: Any, session: boto3.session.Session, faults: Faults
) -> None:
    """Injected: the first StopInstances is refused IncorrectInstanceState, as EC2 refuses to
    stop an instance that has never reached running."""
    ids = launch(ec2, 1)
    aws = host(ids, session)
    await aws.start()
    faults.refuse_stop.append(("IncorrectInstanceState", "it has never reached 'running'"))
    view = await aws.stop()
    assert view.state is PowerState.STOPPED
    assert faults.refuse_stop == []
    assert state(ec2, ids[0]) == "stopped"
    await aws.close()


async def test_no_credentials_is_a_provider_error(
    monkeypatch: pytest.MonkeyPatch, session: boto3.session.Session
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    aws = host(["i-0123456789abcdef0"], session)
    with pytest.raises(ProviderError) as caught:
        await aws.status()
    assert str(caught.value) == (
        f"EC2 describe_instances(i-0123456789abcdef0) in {REGION} failed: "
        "Unable to locate credentials"
    )
    await aws.close()


async def test_an_unreachable_endpoint_is_a_provider_error(session: boto3.session.Session) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    config = AwsProvider(
        region=REGION, instance_ids=("i-0123456789abcdef0",), endpoint_url=endpoint
    )
    aws = AwsHost(config, session=session, client_config=Config(retries={"total_max_attempts": 1}))
    with pytest.raises(ProviderError) as caught:
        await aws.status()
    assert f'Could not connect to the endpoint URL: "{endpoint}/"' in str(caught.value)
    await aws.close()
