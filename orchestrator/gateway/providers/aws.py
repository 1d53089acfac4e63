"""``kind = "aws"``: an EC2 instance (and its twins in other zones), started and stopped by boto3.

Credentials come from boto3's usual chain (on EC2, the gateway VM's instance role). Every SDK call
runs in a worker thread; the client is made on first use, in a thread too (it reads JSON models).
How EC2's states read as ``PowerState`` is in ``aws_states.py``.

``start()`` adopts a configured instance already running or pending (the gateway restarted during
a boot); otherwise it tries the instances in their configured order and waits until one runs:

    when StartInstances answers                 start()
    InsufficientInstanceCapacity (and the       a stockout: the next instance is tried
      Host and ReservedInstance variants)
    InstanceLimitExceeded, VcpuLimitExceeded    not a stockout, yet the next instance is tried: a
                                                quota holds per instance family and purchase
                                                option, and a twin of another family or a Spot
                                                twin may fit; one refused call costs nothing
    (the instance is terminated)                not a stockout; the next instance is tried
    anything else: UnauthorizedOperation,       ProviderError at once, naming the call and AWS's
      InvalidInstanceID.NotFound, AuthFailure,  words: no twin mends a wrong id, a missing
      no credentials, no connection             permission or an endpoint out of reach

When every instance failed, ``HostStartFailed`` lists each one's reason; it is a stockout only if
every one was. EC2 may also accept a start and fail it later: the instance goes from pending back
to stopped with the reason ``Server.InsufficientInstanceCapacity`` (a stockout too). Describe is
eventually consistent, so for ``settle_s`` after StartInstances an instance still shown stopped
with the reason it had before the start is read as not updated yet; once it was seen pending, or
shows a new ``Server.*`` reason, or ``settle_s`` has passed, stopped means the start failed.

``operation_timeout_s`` bounds a whole start or stop. An instance still pending then is a failure
and no twin is started beside it (it may yet come up, and ``status()`` would adopt it). Waiting
polls DescribeInstances every ``poll_s`` from the event loop rather than using boto3's
``instance_running`` waiter: a waiter holds a thread for its whole run and cannot be cancelled.
``stop()`` stops every configured instance that runs or boots, so none is left to be paid for.
A configured id that no longer exists fails every call (EC2 answers InvalidInstanceID.NotFound for
the whole request), so the operator sees it at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from orchestrator.config.gateway import AwsProvider
from orchestrator.gateway.errors import HostStartFailed, ProviderError
from orchestrator.gateway.providers.aws_states import (
    GONE,
    UP,
    Instance,
    ec2_state,
    host_view,
    pick,
    state_reason,
)
from orchestrator.gateway.providers.base import HostView

CAPACITY = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientHostCapacity",
        "InsufficientReservedInstanceCapacity",
    }
)
QUOTA = frozenset({"InstanceLimitExceeded", "VcpuLimitExceeded"})
INCORRECT_STATE = frozenset({"IncorrectInstanceState"})
CLIENT_DEFAULTS = Config(
    connect_timeout=10,
    read_timeout=30,
    retries={"mode": "standard", "max_attempts": 3},
)


@dataclass(frozen=True)
class _Failure:
    """An instance that did not start, after which the next one is worth trying."""

    instance: str
    reason: str
    stockout: bool


class AwsHost:
    name = "aws"

    def __init__(
        self,
        config: AwsProvider,
        *,
        session: boto3.session.Session | None = None,
        poll_s: float = 5.0,
        settle_s: float = 15.0,
        client_config: Config | None = None,
    ) -> None:
        """``session`` defaults to a new boto3 session (the usual credential chain);
        ``client_config`` is merged over ``CLIENT_DEFAULTS`` (timeouts, retries)."""
        self._config = config
        self._ids = config.instance_ids
        self._session = session
        self._poll_s = poll_s
        self._settle_s = settle_s
        self._client_config = (
            CLIENT_DEFAULTS.merge(client_config) if client_config is not None else CLIENT_DEFAULTS
        )
        self._client: Any = None
        self._client_lock = asyncio.Lock()
        self._active: str | None = None
        self._watched: set[str] = set()  # seen running, not since asked by us to stop
        self._stopped_here: set[str] = set()  # asked by us to stop, not since to start

    async def status(self) -> HostView:
        found = await self._describe(self._ids)
        self._active = pick(self._ids, found, self._active)
        return self._view(found[self._active])

    async def start(self) -> HostView:
        deadline = asyncio.get_running_loop().time() + self._config.operation_timeout_s
        found = await self._describe(self._ids)
        up = [iid for iid in self._ids if ec2_state(found[iid]) in UP]
        if up:
            chosen = self._active = pick(self._ids, found, self._active)
            self._stopped_here.discard(chosen)
            outcome = await self._wait_running(found[chosen], deadline)
            if isinstance(outcome, _Failure):
                raise HostStartFailed(f"{chosen}: {outcome.reason}", stockout=outcome.stockout)
            was = ec2_state(found[chosen])
            return replace(
                outcome, detail=_join(f"already {was}, not started again", outcome.detail)
            )
        failures: list[_Failure] = []
        for iid in self._ids:
            started = await self._start_one(found[iid], deadline)
            if isinstance(started, HostView):
                return started
            failures.append(started)
        listed = "; ".join(f"{failure.instance}: {failure.reason}" for failure in failures)
        raise HostStartFailed(
            f"no EC2 instance could start in {self._config.region}: {listed}",
            stockout=all(failure.stockout for failure in failures),
        )

    async def stop(self) -> HostView:
        deadline = asyncio.get_running_loop().time() + self._config.operation_timeout_s
        found = await self._describe(self._ids)
        targets = [iid for iid in self._ids if ec2_state(found[iid]) in UP]
        if not targets:
            self._active = pick(self._ids, found, self._active)
            view = self._view(found[self._active])
            was = ec2_state(found[self._active])
            return replace(view, detail=_join(f"already {was}", view.detail))
        self._stopped_here.update(targets)
        self._watched.difference_update(targets)
        await self._stop_instances(targets, deadline)
        report = self._active = self._active if self._active in targets else targets[0]
        while True:
            instance = (await self._describe([report]))[report]
            if ec2_state(instance) not in UP:
                return self._view(instance)
            if not await self._pause(deadline):
                raise ProviderError(
                    f"EC2 instance {report} is still {ec2_state(instance)} "
                    f"{self._config.operation_timeout_s:g} s after StopInstances"
                )

    async def close(self) -> None:
        async with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)

    # -- one instance --------------------------------------------------------------------------

    async def _start_one(self, instance: Instance, deadline: float) -> HostView | _Failure:
        iid = instance["InstanceId"]
        while ec2_state(instance) == "stopping":  # it must be stopped before it can start again
            if not await self._pause(deadline):
                raise HostStartFailed(f"EC2 instance {iid} is still stopping: it cannot start yet")
            instance = (await self._describe([iid]))[iid]
        if ec2_state(instance) in GONE:
            return _Failure(iid, f"{ec2_state(instance)}: it can never start again", stockout=False)
        self._stopped_here.discard(iid)
        try:
            await self._call("start_instances", allow=CAPACITY | QUOTA, InstanceIds=[iid])
        except ClientError as exc:
            code, message = _error(exc)
            return _Failure(iid, f"{code}: {message}", stockout=code in CAPACITY)
        self._active = iid
        return await self._wait_running(instance, deadline)

    async def _wait_running(self, before: Instance, deadline: float) -> HostView | _Failure:
        """Poll until ``before`` (as it was when asked to start, or found booting) runs."""
        iid = before["InstanceId"]
        old_code, _ = state_reason(before)
        moved = ec2_state(before) in UP
        settled_at = asyncio.get_running_loop().time() + self._settle_s
        while True:
            instance = (await self._describe([iid]))[iid]
            name = ec2_state(instance)
            if name == "running":
                return self._view(instance)
            moved = moved or name == "pending"
            code, message = state_reason(instance)
            news = code != old_code and code.startswith("Server.")
            settled = asyncio.get_running_loop().time() >= settled_at
            if name in GONE or (name != "pending" and (moved or news or settled)):
                stockout = code.endswith("InsufficientInstanceCapacity")
                said = f": {message}" if message else ""
                return _Failure(iid, f"went {name} while starting{said}", stockout=stockout)
            if not await self._pause(deadline):
                raise HostStartFailed(
                    f"EC2 instance {iid} is still {name} "
                    f"{self._config.operation_timeout_s:g} s after it was asked to start"
                )

    async def _stop_instances(self, targets: list[str], deadline: float) -> None:
        """StopInstances, again once the instances run: EC2 refuses to stop an instance that
        has never reached running (IncorrectInstanceState)."""
        while targets:
            try:
                await self._call("stop_instances", allow=INCORRECT_STATE, InstanceIds=targets)
                return
            except ClientError as exc:
                if not await self._pause(deadline):
                    _, message = _error(exc)
                    raise ProviderError(
                        f"EC2 stop_instances({', '.join(targets)}) in {self._config.region} "
                        f"failed until the deadline: {message}"
                    ) from exc
            found = await self._describe(targets)
            targets = [iid for iid in targets if ec2_state(found[iid]) in UP]

    async def _pause(self, deadline: float) -> bool:
        """Sleep one poll (less if the deadline is nearer); False at once if it has passed."""
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(self._poll_s, remaining))
        return True

    def _view(self, instance: Instance) -> HostView:
        return host_view(
            instance,
            port=self._config.port,
            use_public_ip=self._config.use_public_ip,
            watched=instance["InstanceId"] in self._watched,
        )

    # -- the SDK -------------------------------------------------------------------------------

    async def _describe(self, ids: Iterable[str]) -> dict[str, Instance]:
        wanted = list(ids)
        response = await self._call("describe_instances", InstanceIds=wanted)
        found: dict[str, Instance] = {
            instance["InstanceId"]: instance
            for reservation in response.get("Reservations", [])
            for instance in reservation.get("Instances", [])
        }
        missing = [iid for iid in wanted if iid not in found]
        if missing:
            raise ProviderError(
                f"EC2 describe_instances in {self._config.region} did not return "
                f"{', '.join(missing)}"
            )
        for iid, instance in found.items():
            if ec2_state(instance) == "running" and iid not in self._stopped_here:
                self._watched.add(iid)
        return found

    async def _call(
        self, operation: str, *, allow: frozenset[str] = frozenset(), **params: Any
    ) -> dict[str, Any]:
        """One EC2 call in a worker thread. A ClientError whose code is in ``allow`` is raised
        as it is, for the caller to read; every other failure is a ``ProviderError``."""
        client = await self._ec2()
        ids = ", ".join(params.get("InstanceIds", ()))
        where = f"EC2 {operation}({ids}) in {self._config.region}"
        try:
            response = await asyncio.to_thread(getattr(client, operation), **params)
        except ClientError as exc:
            code, message = _error(exc)
            if code in allow:
                raise
            raise ProviderError(f"{where} failed: {code}: {message}") from exc
        except BotoCoreError as exc:
            raise ProviderError(f"{where} failed: {exc}") from exc
        return cast(dict[str, Any], response)

    async def _ec2(self) -> Any:
        async with self._client_lock:
            if self._client is None:
                try:
                    self._client = await asyncio.to_thread(self._make_client)
                except (BotoCoreError, ValueError) as exc:
                    raise ProviderError(
                        f"cannot make an EC2 client for {self._config.region}: {exc}"
                    ) from exc
            return self._client

    def _make_client(self) -> Any:
        session = self._session or boto3.session.Session()
        return session.client(
            "ec2",
            region_name=self._config.region,
            endpoint_url=self._config.endpoint_url,
            config=self._client_config,
        )


def _error(exc: Any) -> tuple[str, str]:
    error = exc.response.get("Error", {})
    return str(error.get("Code", "Unknown")), str(error.get("Message", str(exc)))


def _join(*parts: str) -> str:
    return "; ".join(part for part in parts if part)
