"""Ray Serve's request router for the GPU deployment: warm replicas before cold ones.

Ray Serve loads it by name (``request_router_config``) in every caller of the deployment: the
ingress's handle. The ranking itself is ``warmth.warm_first``; Ray walks the ranks in order,
skips replicas whose ``max_ongoing_requests`` is reached and takes the least busy of a rank.
"""

from __future__ import annotations

from ray.serve.request_router import PendingRequest, RequestRouter, RunningReplica

from orchestrator.scale.warmth import warm_first


class WarmFirstRouter(RequestRouter):
    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        return warm_first(candidate_replicas, lambda replica: replica.routing_stats or {})
