"""The ``gcp`` provider: a Compute Engine instance, with twins in other zones for stockouts.

Each call goes through google-cloud-compute's REST clients in a worker thread (they block),
with Application Default Credentials (on a GCE VM, its service account), or anonymous ones
when ``api_endpoint`` points at a test peer. ``instances.start`` and ``instances.stop`` carry a
fresh UUID ``requestId`` per logical call; transient failures (429, 5xx, a dropped connection)
are retried (for up to a minute) with the same one, so Compute Engine never applies twice what
we asked once. The zone operation is awaited through ``zoneOperations.wait`` on a client built
with the same endpoint and credentials (``ExtendedOperation.result()`` would poll the default
endpoint), for up to ``operation_timeout_s``; past that the instance's own state decides
(booting counts as started, stopping as stopped).

Which instance answers for the host:

    start:  the active instance already up (RUNNING or booting) -> report it, start nothing
            the active instance still stopping -> HostStartFailed, retry in 10 s
            else each listed instance in order:
              started                      -> it is the active instance
              out of capacity (stockout)   -> try the next one
              out of quota                 -> skip the twins in the same region (a regional
                                              quota is shared by its zones); try the others
                                              (a global one fails there too, and says so)
              any other operation error    -> HostStartFailed at once (another zone will not
                                              mend a broken disk or a bad machine type)
            none left -> HostStartFailed listing each instance's reason; ``stockout`` when
            every one was out of capacity (so waiting may help, unlike a quota)
    status, stop: act on the active instance (the preferred one when none was started)

The first call looks at every listed instance: one already running or booting (else one
stopping) becomes the active one, so a gateway restarted mid-boot picks up where the host is.
A host seen up that is found stopped without our asking is reported as such, as preempted when
its scheduling is SPOT or preemptible (Spot twins need ``instanceTerminationAction: STOP``: a
deleted instance is a ``ProviderError``, not a stopped host).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import google.auth
import requests
from google.api_core import exceptions as api_errors
from google.api_core.client_options import ClientOptions
from google.api_core.retry import Retry
from google.auth import exceptions as auth_errors
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import compute_v1

from orchestrator.config.gateway import GcpInstance, GcpProvider
from orchestrator.gateway.errors import HostStartFailed, ProviderError
from orchestrator.gateway.providers.base import HostView, PowerState
from orchestrator.gateway.providers.gcp_states import (
    DOWN,
    QUOTA_CODES,
    STOCKOUT_CODES,
    UP,
    Failure,
    StopTracker,
    instance_key,
    power_state,
    region_of,
    start_failed,
)

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
CALL_TIMEOUT_S = 30.0  # one HTTP call (the library's default is 600 s)
WAIT_HOLD_S = 120.0  # zoneOperations.wait holds a call up to about 2 minutes
ACT_RETRY_S = 60.0  # how long a start or stop is retried after transient HTTP failures
LOOK_RETRY_S = 10.0  # and a look: the controller asks again soon, and should hear of an outage
ANSWERS = STOCKOUT_CODES | QUOTA_CODES  # answers about capacity, not failures of the call
TRANSIENT = (
    api_errors.TooManyRequests,
    api_errors.InternalServerError,
    api_errors.BadGateway,
    api_errors.ServiceUnavailable,
    api_errors.GatewayTimeout,
    requests.ConnectionError,
    requests.Timeout,
)
Clients = tuple[compute_v1.InstancesClient, compute_v1.ZoneOperationsClient]


def call_codes(exc: BaseException) -> frozenset[str]:
    """The reason codes of an HTTP error: each ``errors[].reason`` and the ErrorInfo's."""
    if not isinstance(exc, api_errors.GoogleAPICallError):
        return frozenset()
    codes = {e.get("reason", "") for e in exc.errors if isinstance(e, dict)}
    codes.add(exc.reason or "")
    return frozenset(codes - {""})


def retryable(exc: BaseException) -> bool:
    """Transient HTTP failures are retried with the same ``requestId``; a stockout or quota
    answered as 503 or 429 is not (it is the answer, and the next twin is waiting)."""
    return isinstance(exc, TRANSIENT) and not call_codes(exc) & ANSWERS


class GcpHost:
    """``HostProvider`` over Compute Engine (the module docstring says which instance)."""

    name = "gcp"

    def __init__(
        self,
        config: GcpProvider,
        *,
        credentials: Credentials | None = None,
        retry_initial_s: float = 0.5,
    ) -> None:
        self._config = config
        self._credentials = credentials
        self._act_retry = Retry(
            predicate=retryable,
            initial=retry_initial_s,
            maximum=8.0,
            multiplier=2.0,
            timeout=min(ACT_RETRY_S, config.operation_timeout_s),
        )
        self._look_retry = self._act_retry.with_timeout(LOOK_RETRY_S)
        self._clients: Clients | None = None
        self._clients_lock = asyncio.Lock()
        self._adopt_lock = asyncio.Lock()
        self._lock = asyncio.Lock()  # one start or stop at a time
        self._adopted = False
        self._active: GcpInstance | None = None
        self._stops = StopTracker()

    async def status(self) -> HostView:
        await self._adopt()
        target = self._current()
        return self._view(target, await self._get(target))

    async def start(self) -> HostView:
        async with self._lock:
            await self._adopt()
            if self._active is not None:
                view = self._view(self._active, await self._get(self._active))
                if view.state in UP:
                    return view
                if view.state is PowerState.STOPPING:
                    raise HostStartFailed(
                        f"gcp instance {view.instance} is still stopping ({view.detail}); "
                        "it can start once it stopped",
                        retry_after_s=10,
                    )
            return await self._start_in_order()

    async def stop(self) -> HostView:
        async with self._lock:
            await self._adopt()
            target = self._current()
            self._stops.asked_stop(instance_key(target))
            view = self._view(target, await self._get(target))
            if view.state in DOWN:
                return view
            request = compute_v1.StopInstanceRequest(
                project=self._config.project,
                zone=target.zone,
                instance=target.name,
                request_id=str(uuid.uuid4()),
            )
            instances, _ = await self._client_pair()
            with self._mapped("instances.stop", target):
                operation = await asyncio.to_thread(
                    instances.stop_unary,
                    request=request,
                    retry=self._act_retry,
                    timeout=CALL_TIMEOUT_S,
                )
            done = await self._wait(target, operation, "instances.stop")
            if done is not None and done.error.errors:
                raise ProviderError(
                    f"gcp instances.stop {view.instance} failed: {operation_words(done)}"
                )
            view = self._view(target, await self._get(target))
            if view.state not in DOWN:
                raise ProviderError(
                    f"gcp instances.stop {view.instance} not done after "
                    f"{self._config.operation_timeout_s:g} s; the instance is {view.detail}"
                )
            return view

    async def close(self) -> None:
        clients, self._clients = self._clients, None
        for client in clients or ():
            client.transport.close()  # type: ignore[no-untyped-call]

    # -- starting ---------------------------------------------------------------------------

    async def _start_in_order(self) -> HostView:
        failures: list[Failure] = []
        quota_regions: set[str] = set()
        for target in self._config.instances:
            if region_of(target.zone) in quota_regions:
                reason = "not tried: quota exceeded in its region"
                failures.append(Failure(instance_key(target), reason))
                continue
            outcome = await self._start_one(target)
            if isinstance(outcome, HostView):
                return outcome
            failures.append(outcome)
            self._stops.did_not_start(outcome.instance)
            if outcome.quota:
                quota_regions.add(region_of(target.zone))
            elif not outcome.stockout:
                break  # another zone will not mend a broken disk or a bad machine type
        self._active = None
        raise start_failed(failures)

    async def _start_one(self, target: GcpInstance) -> HostView | Failure:
        name = instance_key(target)
        request = compute_v1.StartInstanceRequest(
            project=self._config.project,
            zone=target.zone,
            instance=target.name,
            request_id=str(uuid.uuid4()),
        )
        instances, _ = await self._client_pair()
        with self._mapped("instances.start", target):
            try:
                operation = await asyncio.to_thread(
                    instances.start_unary,
                    request=request,
                    retry=self._act_retry,
                    timeout=CALL_TIMEOUT_S,
                )
            except api_errors.GoogleAPICallError as exc:  # a stockout may be answered at once
                if not call_codes(exc) & ANSWERS:
                    raise
                return Failure(name, call_words(exc), call_codes(exc))
        self._active = target
        self._stops.asked_start(name)
        done = await self._wait(target, operation, "instances.start")
        if done is not None and done.error.errors:
            codes = frozenset(error.code for error in done.error.errors)
            return Failure(name, operation_words(done), codes)
        view = self._view(target, await self._get(target))
        if view.state in UP:
            return view
        if done is None:
            raise HostStartFailed(
                f"gcp instances.start {name} not done after "
                f"{self._config.operation_timeout_s:g} s; the instance is {view.detail}"
            )
        return Failure(name, f"started, but the instance is {view.detail}")

    # -- looking ----------------------------------------------------------------------------

    async def _adopt(self) -> None:
        """On the first call, make an instance that is already up (else stopping) active."""
        if self._adopted:
            return
        async with self._adopt_lock:
            if self._adopted:
                return
            targets = self._config.instances
            found = await asyncio.gather(*(self._get(target) for target in targets))
            states = [power_state(instance.status) for instance in found]
            for wanted in (UP, frozenset({PowerState.STOPPING})):
                for target, state in zip(targets, states, strict=True):
                    if state in wanted and self._active is None:
                        self._active = target
            for target, instance in zip(targets, found, strict=True):
                self._view(target, instance)  # what each was like when we came
            self._adopted = True

    def _current(self) -> GcpInstance:
        return self._active or self._config.instances[0]

    def _view(self, target: GcpInstance, instance: compute_v1.Instance) -> HostView:
        name = instance_key(target)
        state = power_state(instance.status)
        scheduling = instance.scheduling
        spot = scheduling.provisioning_model == "SPOT" or scheduling.preemptible
        note = self._stops.see(name, state, spot=spot)
        detail = instance.status or "no status"
        return HostView(
            state=state,
            url=self._url(target, instance) if state is PowerState.RUNNING else None,
            instance=name,
            detail=f"{detail} ({note})" if note else detail,
        )

    def _url(self, target: GcpInstance, instance: compute_v1.Instance) -> str:
        nics = instance.network_interfaces
        if self._config.use_external_ip:
            configs = nics[0].access_configs if nics else []
            address = configs[0].nat_i_p if configs else ""
            where = "an external IP (networkInterfaces[0].accessConfigs[0].natIP)"
        else:
            address = nics[0].network_i_p if nics else ""
            where = "a private IP (networkInterfaces[0].networkIP)"
        if not address:
            raise ProviderError(f"gcp instance {instance_key(target)} is RUNNING without {where}")
        return f"http://{address}:{self._config.port}"

    async def _get(self, target: GcpInstance) -> compute_v1.Instance:
        instances, _ = await self._client_pair()
        request = compute_v1.GetInstanceRequest(
            project=self._config.project, zone=target.zone, instance=target.name
        )
        with self._mapped("instances.get", target):
            return await asyncio.to_thread(
                instances.get, request=request, retry=self._look_retry, timeout=CALL_TIMEOUT_S
            )

    async def _wait(
        self, target: GcpInstance, operation: compute_v1.Operation, call: str
    ) -> compute_v1.Operation | None:
        """The operation once DONE, or None when ``operation_timeout_s`` ran out first."""
        _, operations = await self._client_pair()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.operation_timeout_s
        while operation.status != compute_v1.Operation.Status.DONE:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            request = compute_v1.WaitZoneOperationRequest(
                project=self._config.project, zone=target.zone, operation=operation.name
            )
            with self._mapped(f"zoneOperations.wait for {call} ({operation.name})", target):
                try:
                    operation = await asyncio.to_thread(
                        operations.wait, request=request, timeout=min(remaining, WAIT_HOLD_S + 10)
                    )
                except requests.Timeout:
                    continue  # the hold outlasted what was left of ours: the deadline decides
        return operation

    # -- clients and errors -----------------------------------------------------------------

    async def _client_pair(self) -> Clients:
        """Built on first use, in a thread: finding the default credentials may ask the
        metadata server, which blocks."""
        async with self._clients_lock:
            if self._clients is None:
                with self._mapped("credentials", None):
                    self._clients = await asyncio.to_thread(self._build_clients)
            return self._clients

    def _build_clients(self) -> Clients:
        credentials = self._credentials
        options = None
        if self._config.api_endpoint:
            options = ClientOptions(api_endpoint=self._config.api_endpoint)
            credentials = credentials or AnonymousCredentials()  # type: ignore[no-untyped-call]
        elif credentials is None:
            credentials, _ = google.auth.default(scopes=SCOPES)
        return (
            compute_v1.InstancesClient(
                credentials=credentials, transport="rest", client_options=options
            ),
            compute_v1.ZoneOperationsClient(
                credentials=credentials, transport="rest", client_options=options
            ),
        )

    @contextmanager
    def _mapped(self, call: str, target: GcpInstance | None) -> Iterator[None]:
        """Library, credential and transport errors become ``ProviderError`` naming the call."""
        where = f" {instance_key(target)}" if target else ""
        try:
            yield
        except api_errors.NotFound as exc:
            raise ProviderError(
                f"gcp {call}{where}: no such instance in project {self._config.project!r}, "
                f"zone {target.zone if target else '?'!r} ({call_words(exc)})"
            ) from exc
        except auth_errors.DefaultCredentialsError as exc:
            raise ProviderError(
                "gcp: no Application Default Credentials (on a GCE VM, give it a service "
                f"account with the cloud-platform scope): {exc}"
            ) from exc
        except (api_errors.GoogleAPIError, auth_errors.GoogleAuthError) as exc:
            raise ProviderError(f"gcp {call}{where} failed: {call_words(exc)}") from exc
        except requests.RequestException as exc:
            raise ProviderError(f"gcp {call}{where} failed: {exc}") from exc


def call_words(exc: BaseException) -> str:
    """An API error as Compute Engine said it: status, message, reason codes."""
    if isinstance(exc, api_errors.GoogleAPICallError):
        codes = sorted(call_codes(exc))
        return f"{exc.code} {exc.message}" + (f" [{', '.join(codes)}]" if codes else "")
    return str(exc)


def operation_words(operation: compute_v1.Operation) -> str:
    return "; ".join(f"{error.code}: {error.message}" for error in operation.error.errors)
