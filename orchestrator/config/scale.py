"""``[scale]``: past one GPU, the voice API on Ray Serve (``python -m orchestrator serve --ray``).

Each replica runs the whole runtime (engines, ladder, leases) on one GPU; a light ingress on the
Ray head accepts every request and socket and pins it to one replica for its life. What Ray
Serve is told comes from here (``orchestrator/scale/options.py`` turns it into deployment
options):

    sessions_per_replica   max_ongoing_requests: unset, the planner's sessions per GPU
    max_queued_sessions    max_queued_requests: -1 queues every extra session until a replica
                           has room; N queues N (per ingress replica) and refuses the next.
                           Ray counts every request still waiting for its place, so a burst
                           of N+1 new sessions meets the limit even while replicas have room
    replicas               a fixed count; unset, autoscaling from min_replicas (0 allowed) to
                           max_replicas on open sessions (target: target_fill of a replica)
    downscale_delay_s      how long load must stay low before a replica is taken away
    graceful_shutdown_timeout_s
                           how long a draining replica may finish its open sessions: at least
                           ``[sessions] max_minutes``, so a lesson is never cut (unset: that
                           plus a minute)

Only this path imports Ray (``pip install .[ray]``); ``./start.sh`` never needs it.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(gt=0)]
Delay = Annotated[float, Field(ge=0)]


class ScaleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    app_name: str = "voice"
    http_host: str = "0.0.0.0"  # Ray Serve's HTTP proxy on the head: the voice API's front door
    http_port: Port = 11400
    # Where each replica's own voice API listens (its port is picked at start); the ingress
    # reaches it at the node's address when this is 0.0.0.0.
    replica_host: str = "0.0.0.0"
    gpus_per_replica: Annotated[float, Field(ge=0)] = 1.0  # 0 on a CPU-only cluster
    cpus_per_replica: Annotated[float, Field(ge=0)] = 1.0
    replicas: Annotated[int, Field(ge=1)] | None = None
    min_replicas: Annotated[int, Field(ge=0)] = 0
    max_replicas: Annotated[int, Field(ge=1)] = 4
    initial_replicas: Annotated[int, Field(ge=0)] | None = None
    sessions_per_replica: Annotated[int, Field(ge=1)] | None = None
    max_queued_sessions: int = -1
    target_fill: Annotated[float, Field(gt=0, le=1)] = 0.8
    upscale_delay_s: Delay = 5.0
    downscale_delay_s: Delay = 600.0
    downscale_to_zero_delay_s: Delay | None = None
    graceful_shutdown_timeout_s: Seconds | None = None
    routing_stats_period_s: Seconds = 2.0  # how fresh the router's view of warm replicas is
    claim_timeout_s: Seconds = 30.0  # a place the ingress never connects to is freed after this
    ingress_replicas: Annotated[int, Field(ge=1)] = 1
    ingress_max_sessions: Annotated[int, Field(ge=1)] = 1000
    waking_interval_s: Seconds = 5.0  # a client held while a replica starts is told this often

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) is above max_replicas ({self.max_replicas})"
            )
        initial = self.initial_replicas
        if initial is not None and not self.min_replicas <= initial <= self.max_replicas:
            raise ValueError(f"initial_replicas ({initial}) is outside min_replicas..max_replicas")
        if self.max_queued_sessions == 0 or self.max_queued_sessions < -1:
            raise ValueError(
                "max_queued_sessions must be -1 (queue every session) or at least 1"
                f" (got {self.max_queued_sessions})"
            )
        return self

    def drain_s(self, session_max_minutes: float) -> float:
        """How long a draining replica may run: the configured time, else the longest
        session (``[sessions] max_minutes``) plus a minute."""
        if self.graceful_shutdown_timeout_s is not None:
            return self.graceful_shutdown_timeout_s
        return session_max_minutes * 60 + 60
