"""``[gateway]``: the always-on front door that starts and stops the GPU host.

The gateway runs on a small VM without a GPU. The app talks to it; it holds requests while the
host boots, passes them through once the host's ``/health/ready`` answers, and stops the host
when nobody has used it for ``stop_after_s``. ``[gateway.provider]`` says how the host is
started and stopped:

    kind = "local"     an orchestrator server process on this machine (development, demos, tests)
    kind = "command"   shell commands for start, stop and status (RunPod, libvirt, Wake-on-LAN...)
    kind = "gcp"       a Compute Engine instance (google-cloud-compute; ``pip install .[gateway]``)
    kind = "aws"       an EC2 instance (boto3; ``pip install .[gateway]``)

``gcp`` and ``aws`` take an ordered list of fallback instances (twins in other zones) tried when
the first cannot start for want of capacity.
"""

from __future__ import annotations

from datetime import date, time
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(gt=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL like http://10.0.0.5:11400")
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_http_url)]


class LocalProvider(_Model):
    """An orchestrator server started as a child process of the gateway."""

    kind: Literal["local"] = "local"
    # Arguments after ``python -m orchestrator serve`` (e.g. ["--profile", "tiny"]).
    serve_args: tuple[str, ...] = ()
    # Where the gateway reaches it; the server must listen there (its own [server] api_port).
    url: HttpUrl = "http://127.0.0.1:11400"
    # Extra environment for the server process (the gateway adds its host key as VO_API_KEYS).
    env: dict[str, str] = Field(default_factory=dict)
    stop_timeout_s: Seconds = 30.0
    # Stop the server when the gateway exits (a VM would outlive it; a demo should not).
    stop_with_gateway: bool = True


class CommandProvider(_Model):
    """Shell commands, each run in its own process group (killed with all it started at
    ``timeout_s``), with ``VO_HOST_ACTION`` (start, stop, status) and ``VO_HOST_URL`` set.
    ``status`` prints one of stopped, starting, running, stopping as its first word. A ``start``
    that finds no capacity exits 75 (EX_TEMPFAIL) or prints a line ``stockout``: the gateway
    then reports a stockout and backs off."""

    kind: Literal["command"] = "command"
    start: str
    stop: str
    status: str
    url: HttpUrl  # where the orchestrator on the host answers, e.g. http://10.0.0.5:11400
    timeout_s: Seconds = 120.0


class GcpInstance(_Model):
    zone: str
    name: str


class GcpProvider(_Model):
    """A Compute Engine instance, with Application Default Credentials."""

    kind: Literal["gcp"] = "gcp"
    project: str
    instances: tuple[GcpInstance, ...] = Field(min_length=1)  # first is preferred; rest fallbacks
    port: Port = 11400  # the orchestrator's port on the instance's private address
    use_external_ip: bool = False  # only where gateway and host share no private network
    operation_timeout_s: Seconds = 300.0
    api_endpoint: str | None = None  # tests point this at a peer of the Compute REST API


class AwsProvider(_Model):
    """An EC2 instance, with boto3's usual credential chain (the gateway VM's role)."""

    kind: Literal["aws"] = "aws"
    region: str
    instance_ids: tuple[str, ...] = Field(min_length=1)  # first is preferred; rest fallbacks
    port: Port = 11400
    use_public_ip: bool = False
    operation_timeout_s: Seconds = 300.0
    endpoint_url: str | None = None  # tests point this at moto


ProviderConfig = Annotated[
    LocalProvider | CommandProvider | GcpProvider | AwsProvider, Field(discriminator="kind")
]


def _hh_mm(value: str) -> str:
    try:
        time.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a time of day like 17:30") from None
    if len(value) != 5:
        raise ValueError(f"{value!r} is not a time of day like 17:30 (HH:MM)")
    return value


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a time zone like Europe/Berlin") from None
    return value


HhMm = Annotated[str, AfterValidator(_hh_mm)]


class KeepOnWindow(_Model):
    """Exam weeks: the host is kept on between ``start`` and ``end`` (local time) on each day
    from ``from_date`` to ``to_date`` inclusive (``weekdays``, 0 = Monday; empty: every day)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_date: date = Field(alias="from")
    to_date: date = Field(alias="to")
    weekdays: tuple[Annotated[int, Field(ge=0, le=6)], ...] = ()
    start: HhMm
    end: HhMm

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.to_date < self.from_date:
            raise ValueError(f"to {self.to_date} is before from {self.from_date}")
        if self.end <= self.start:
            raise ValueError(f"end {self.end} is not after start {self.start}")
        return self


class PrewarmConfig(_Model):
    """``[gateway.prewarm]``: start the host before the slots students usually come in, and
    learn how long to keep it on (``orchestrator/credits/prewarm.py`` decides)."""

    enabled: bool = False
    timezone: Annotated[str, AfterValidator(_zone)] = "UTC"  # where weekdays and slots are
    weeks: Annotated[int, Field(ge=1, le=52)] = 4  # how many past weeks are looked at
    min_weeks: Annotated[int, Field(ge=1, le=52)] = 2  # fewer weeks of history: no pre-warm
    # A weekday's 15-minute slot is pre-warmed when this share of the weeks had a session in it.
    threshold: Annotated[float, Field(gt=0, le=1)] = 0.5
    margin_s: Annotated[float, Field(ge=0)] = 60.0  # started this long before boot p95 needs
    # The idle stop: this percentile of the gaps between sessions within a day, clamped ...
    idle_percentile: Annotated[float, Field(gt=0, le=100)] = 25.0
    idle_min_s: Seconds = 300.0
    idle_max_s: Seconds = 1800.0
    min_gaps: Annotated[int, Field(ge=1)] = 10  # ... and stop_after_s with fewer gaps known
    holidays: tuple[date, ...] = ()  # never pre-warmed (a request still starts the host)
    keep_on: tuple[KeepOnWindow, ...] = ()

    @model_validator(mode="after")
    def _ranges(self) -> Self:
        if self.idle_max_s < self.idle_min_s:
            raise ValueError(f"idle_max_s {self.idle_max_s} is below idle_min_s {self.idle_min_s}")
        if self.min_weeks > self.weeks:
            raise ValueError(f"min_weeks {self.min_weeks} is more than weeks {self.weeks}")
        return self


class BridgeConfig(_Model):
    """``[gateway.bridge]``: an orchestrator server on CPU engines beside the gateway, which
    answers while the GPU host wakes (the first words in seconds, not minutes).

    It is a second process (``python -m orchestrator serve`` with ``serve_args``, e.g.
    ``["--profile", "cpu"]``), started with the gateway so its engines are warm, on loopback,
    with the gateway's host key as its only key: the gateway's own process never loads an
    engine. A Realtime session opened while the host is not up is relayed to it, then handed
    to the host at the first turn boundary once the host is ready; a REST request still
    waiting for the host after ``bridge_after_s`` is served by it."""

    enabled: bool = False
    serve_args: tuple[str, ...] = ("--profile", "cpu")
    url: HttpUrl = "http://127.0.0.1:11450"  # the gateway starts it listening here (bridge_env)
    env: dict[str, str] = Field(default_factory=dict)
    bridge_after_s: Seconds = 3.0
    stop_timeout_s: Seconds = 30.0


class GatewayConfig(_Model):
    host: str = "0.0.0.0"
    port: Port = 11500
    provider: ProviderConfig = LocalProvider()
    # A REST request is held this long for the host to become ready, then answered 503 with
    # Retry-After; a WebSocket is accepted at once and told ``waking`` every waking_interval_s.
    hold_s: Seconds = 60.0
    waking_interval_s: Seconds = 2.0
    # Audio a Realtime client sends while the host boots is kept (up to this many bytes of
    # messages) and handed to the host once it is ready; beyond it, the client gets an error.
    realtime_buffer_bytes: Annotated[int, Field(ge=0)] = 8 * 2**20
    # No open session and no request for stop_after_s: drain for drain_s, then stop the host.
    stop_after_s: Seconds = 600.0
    drain_s: Seconds = 30.0
    # How often the host's state and readiness are polled while it starts.
    poll_s: Seconds = 1.0
    # A host not ready this long after the start was asked is FAILED (then retried with backoff).
    start_timeout_s: Seconds = 900.0
    backoff_s: Seconds = 15.0  # after a failed start; doubles up to backoff_max_s
    backoff_max_s: Seconds = 600.0
    # The ETA announced before any start was measured.
    default_eta_s: Seconds = 90.0
    usd_per_hour: Annotated[float, Field(ge=0)] = 0.0  # the gateway VM's own price
    # When the gateway VM began to bill (a UTC day); unset: from its first recorded transition.
    billed_since: date | None = None
    # The operator's console (host state, history, money, Start/Stop): loopback, login required.
    console_host: str = "127.0.0.1"
    console_port: Port = 8767
    prewarm: PrewarmConfig = PrewarmConfig()
    bridge: BridgeConfig = BridgeConfig()
