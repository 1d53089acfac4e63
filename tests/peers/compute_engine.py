"""A stand-in for the Compute Engine API (``compute.googleapis.com``, REST v1), in process.

It stands for the real service where the gcp provider's tests cannot reach it. It answers the
calls exactly as google-cloud-compute's REST transport makes them (the paths and verbs are those
of ``compute_v1/services/{instances,zone_operations}/transports/rest_base.py``; the bodies follow
the API reference's ``compute#instance`` and ``compute#operation`` resources):

    GET  /compute/v1/projects/{project}/zones/{zone}/instances/{instance}
    POST /compute/v1/projects/{project}/zones/{zone}/instances/{instance}/start?requestId=...
    POST /compute/v1/projects/{project}/zones/{zone}/instances/{instance}/stop?requestId=...
    GET  /compute/v1/projects/{project}/zones/{zone}/operations/{operation}
    POST /compute/v1/projects/{project}/zones/{zone}/operations/{operation}/wait

Errors are Google's JSON error bodies (``{"error": {"code", "message", "errors": [{"message",
"domain", "reason"}]}}``) with the HTTP status; a failed operation ends DONE with
``error.errors[]`` (``code``, ``message``, ``errorDetails``) and ``httpErrorStatusCode``, as a
stockout or a quota does on Compute Engine.

The simulation: a start moves an instance TERMINATED -> PROVISIONING -> STAGING -> RUNNING and a
stop RUNNING -> STOPPING -> TERMINATED; each look at the operation (``get`` or ``wait``) is time
passing and moves it one step (``wait`` returning before DONE is the API's documented
best-effort). A ``requestId`` seen before returns its operation and does nothing again. The tests
script it: ``stockout``, ``quota`` and ``no_disk`` (zones whose starts fail), ``stall`` (zones whose
operations never finish; ``wait`` then holds ``hold_s``, as the real one holds up to two
minutes), ``lose_next`` (a POST applied, then answered 503 as a front end that timed out),
``preempt()``, ``stockout_at_once`` (zones that refuse a start at once: HTTP 503 with the code
as the error's reason, a form the provider must also take for a stockout). Every call is
recorded in ``calls``; ``starts`` counts the starts actually applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

API = "https://www.googleapis.com/compute/v1"
RESOURCE_ERROR_DOC = "https://cloud.google.com/compute/docs/resource-error"


@dataclass
class Instance:
    zone: str
    name: str
    status: str = "TERMINATED"
    network_ip: str = "10.128.0.2"
    nat_ip: str = "34.66.0.2"
    spot: bool = False
    id: int = 0

    def body(self, project: str) -> dict[str, Any]:
        zone = f"{API}/projects/{project}/zones/{self.zone}"
        access: dict[str, Any] = {
            "kind": "compute#accessConfig",
            "type": "ONE_TO_ONE_NAT",
            "name": "External NAT",
            "networkTier": "PREMIUM",
        }
        if self.status == "RUNNING":  # an ephemeral external address lives while it runs
            access["natIP"] = self.nat_ip
        scheduling: dict[str, Any] = {"onHostMaintenance": "TERMINATE", "automaticRestart": True}
        if self.spot:
            scheduling = {
                "onHostMaintenance": "TERMINATE",
                "automaticRestart": False,
                "preemptible": True,
                "provisioningModel": "SPOT",
                "instanceTerminationAction": "STOP",
            }
        return {
            "kind": "compute#instance",
            "id": str(self.id),
            "name": self.name,
            "zone": zone,
            "machineType": f"{zone}/machineTypes/g2-standard-8",
            "status": self.status,
            "networkInterfaces": [
                {
                    "kind": "compute#networkInterface",
                    "name": "nic0",
                    "network": f"{API}/projects/{project}/global/networks/default",
                    "networkIP": self.network_ip,
                    "stackType": "IPV4_ONLY",
                    "accessConfigs": [access],
                }
            ],
            "scheduling": scheduling,
            "selfLink": f"{zone}/instances/{self.name}",
        }


Step = tuple[str, str, dict[str, Any] | None]  # operation status, instance status, error


@dataclass
class Operation:
    name: str
    id: int
    kind: str  # operationType: "start" or "stop"
    target: Instance
    steps: list[Step]
    status: str = "PENDING"
    error: dict[str, Any] | None = None
    moved: asyncio.Event = field(default_factory=asyncio.Event)

    def advance(self) -> None:
        if self.steps:
            self.status, self.target.status, self.error = self.steps.pop(0)
            self.moved.set()

    def body(self, project: str) -> dict[str, Any]:
        zone = f"{API}/projects/{project}/zones/{self.target.zone}"
        body: dict[str, Any] = {
            "kind": "compute#operation",
            "id": str(self.id),
            "name": self.name,
            "zone": zone,
            "operationType": self.kind,
            "targetLink": f"{zone}/instances/{self.target.name}",
            "targetId": str(self.target.id),
            "status": self.status,
            "user": "gateway@example-project.iam.gserviceaccount.com",
            "progress": 100 if self.status == "DONE" else 0,
            "selfLink": f"{zone}/operations/{self.name}",
        }
        if self.error is not None:
            body.update(self.error)
        return body


def stockout_error(project: str, zone: str) -> dict[str, Any]:
    message = (
        f"The zone 'projects/{project}/zones/{zone}' does not have enough resources available "
        "to fulfill the request.  Try a different zone, or try again later."
    )
    info = {
        "reason": "resource_availability",
        "domain": "compute.googleapis.com",
        "metadatas": {"zone": zone, "vmType": "g2-standard-8", "attachment": "nvidia-l4:1"},
    }
    links = [{"description": "Troubleshooting documentation", "url": RESOURCE_ERROR_DOC}]
    details = [{"errorInfo": info}, {"help": {"links": links}}]
    error = {"code": "ZONE_RESOURCE_POOL_EXHAUSTED", "message": message, "errorDetails": details}
    return {
        "error": {"errors": [error]},
        "httpErrorStatusCode": 503,
        "httpErrorMessage": "SERVICE UNAVAILABLE",
    }


def quota_error(zone: str) -> dict[str, Any]:
    region = zone.rsplit("-", 1)[0]
    message = f"Quota 'NVIDIA_L4_GPUS' exceeded.  Limit: 1.0 in region {region}."
    quota = {
        "metricName": "compute.googleapis.com/nvidia_l4_gpus",
        "limitName": "NVIDIA-L4-GPUS-per-project-region",
        "dimensions": {"region": region},
        "limit": 1.0,
    }
    error = {"code": "QUOTA_EXCEEDED", "message": message, "errorDetails": [{"quotaInfo": quota}]}
    return {
        "error": {"errors": [error]},
        "httpErrorStatusCode": 403,
        "httpErrorMessage": "FORBIDDEN",
    }


def no_disk_error(project: str, target: Instance) -> dict[str, Any]:
    disk = f"projects/{project}/zones/{target.zone}/disks/{target.name}"
    error = {"code": "RESOURCE_NOT_FOUND", "message": f"The resource '{disk}' was not found"}
    return {
        "error": {"errors": [error]},
        "httpErrorStatusCode": 404,
        "httpErrorMessage": "NOT FOUND",
    }


def google_error(status: int, message: str, reason: str) -> web.Response:
    errors = [{"message": message, "domain": "global", "reason": reason}]
    return web.json_response(
        {"error": {"code": status, "message": message, "errors": errors}}, status=status
    )


@dataclass
class Call:
    method: str
    path: str
    request_id: str | None


class ComputeEngine:
    """One project's instances and zone operations (see the module docstring)."""

    def __init__(self, project: str, *, hold_s: float = 0.05) -> None:
        self.project = project
        self.hold_s = hold_s
        self.instances: dict[tuple[str, str], Instance] = {}
        self.operations: dict[str, Operation] = {}
        self.by_request_id: dict[str, Operation] = {}
        self.stockout: set[str] = set()
        self.quota: set[str] = set()
        self.no_disk: set[str] = set()
        self.stall: set[str] = set()
        self.stockout_at_once: set[str] = set()
        self.lose_next: set[tuple[str, str]] = set()  # (verb, "zone/name")
        self.deny: set[str] = set()  # "zone/name" the caller has no permission on
        self.calls: list[Call] = []
        self.starts: Counter[str] = Counter()
        self._ids = itertools.count(7_000_000_000_000_000_001)
        self.url = ""

    def add(self, zone: str, name: str, **fields: Any) -> Instance:
        instance = Instance(zone, name, id=next(self._ids), **fields)
        self.instances[(zone, name)] = instance
        return instance

    def preempt(self, zone: str, name: str) -> None:
        """Compute Engine reclaims a Spot instance (its termination action is STOP)."""
        self.instances[(zone, name)].status = "TERMINATED"

    def posted(self, verb: str) -> list[Call]:
        return [call for call in self.calls if call.method == "POST" and call.path.endswith(verb)]

    # -- the API ----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        base = "/compute/v1/projects/{project}/zones/{zone}"
        app.router.add_get(base + "/instances/{instance}", self._get_instance)
        app.router.add_post(base + "/instances/{instance}/start", self._start)
        app.router.add_post(base + "/instances/{instance}/stop", self._stop)
        app.router.add_get(base + "/operations/{operation}", self._get_operation)
        app.router.add_post(base + "/operations/{operation}/wait", self._wait)
        app.middlewares.append(self._record)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.calls.append(Call(request.method, request.path, request.query.get("requestId")))
        response: web.StreamResponse = await handler(request)
        return response

    def _instance(self, request: web.Request) -> Instance | web.Response:
        info = request.match_info
        found = self.instances.get((info["zone"], info["instance"]))
        resource = f"projects/{info['project']}/zones/{info['zone']}/instances/{info['instance']}"
        if f"{info['zone']}/{info['instance']}" in self.deny:
            verb = request.path.rsplit("/", 1)[-1] if request.method == "POST" else "get"
            message = f"Required 'compute.instances.{verb}' permission for '{resource}'"
            return google_error(403, message, "forbidden")
        if info["project"] != self.project or found is None:
            return google_error(404, f"The resource '{resource}' was not found", "notFound")
        return found

    async def _get_instance(self, request: web.Request) -> web.Response:
        found = self._instance(request)
        if isinstance(found, web.Response):
            return found
        return web.json_response(found.body(self.project))

    async def _start(self, request: web.Request) -> web.Response:
        return await self._act(request, "start")

    async def _stop(self, request: web.Request) -> web.Response:
        return await self._act(request, "stop")

    async def _act(self, request: web.Request, kind: str) -> web.Response:
        found = self._instance(request)
        if isinstance(found, web.Response):
            return found
        if kind == "start" and found.zone in self.stockout_at_once:
            message = stockout_error(self.project, found.zone)["error"]["errors"][0]["message"]
            return google_error(503, message, "ZONE_RESOURCE_POOL_EXHAUSTED")
        request_id = request.query.get("requestId")
        operation = self.by_request_id.get(request_id) if request_id else None
        if operation is None:
            operation = self._begin(found, kind)
            if request_id:
                self.by_request_id[request_id] = operation
        lost = (kind, f"{found.zone}/{found.name}")
        if lost in self.lose_next:
            self.lose_next.discard(lost)
            return google_error(503, "The service is currently unavailable.", "backendError")
        return web.json_response(operation.body(self.project))

    def _begin(self, target: Instance, kind: str) -> Operation:
        name = f"operation-{next(self._ids)}-start-stop"
        steps: list[Step]
        if kind == "start" and target.status in ("TERMINATED", "STOPPED"):
            self.starts[f"{target.zone}/{target.name}"] += 1
            target.status = "PROVISIONING"
            error = None
            if target.zone in self.stockout:
                error = stockout_error(self.project, target.zone)
            elif target.zone in self.quota:
                error = quota_error(target.zone)
            elif target.zone in self.no_disk:
                error = no_disk_error(self.project, target)
            last = "TERMINATED" if error else "RUNNING"
            steps = [("RUNNING", "STAGING", None), ("DONE", last, error)]
        elif kind == "stop" and target.status not in ("TERMINATED", "STOPPED"):
            target.status = "STOPPING"
            steps = [("RUNNING", "STOPPING", None), ("DONE", "TERMINATED", None)]
        else:  # already where it was asked to go
            steps = [("DONE", target.status, None)]
        operation = Operation(name, next(self._ids), kind, target, steps)
        self.operations[name] = operation
        return operation

    def _operation(self, request: web.Request) -> Operation | web.Response:
        info = request.match_info
        found = self.operations.get(info["operation"])
        if found is None or found.target.zone != info["zone"]:
            resource = (
                f"projects/{info['project']}/zones/{info['zone']}/operations/{info['operation']}"
            )
            return google_error(404, f"The resource '{resource}' was not found", "notFound")
        return found

    async def _get_operation(self, request: web.Request) -> web.Response:
        found = self._operation(request)
        if isinstance(found, web.Response):
            return found
        if found.target.zone not in self.stall:
            found.advance()
        return web.json_response(found.body(self.project))

    async def _wait(self, request: web.Request) -> web.Response:
        found = self._operation(request)
        if isinstance(found, web.Response):
            return found
        if found.target.zone in self.stall:
            found.moved.clear()
            with contextlib.suppress(TimeoutError):  # the real one holds up to two minutes
                await asyncio.wait_for(found.moved.wait(), self.hold_s)
        else:
            found.advance()
        return web.json_response(found.body(self.project))


@asynccontextmanager
async def serving(engine: ComputeEngine) -> AsyncIterator[ComputeEngine]:
    """Serve ``engine`` on a free port of 127.0.0.1; ``engine.url`` is its endpoint."""
    runner = web.AppRunner(engine.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    engine.url = f"http://{host}:{port}"
    try:
        yield engine
    finally:
        await runner.cleanup()
