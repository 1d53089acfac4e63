"""What Ray Serve is told about our two deployments, as plain data (pure, no Ray import).

``replica_options`` is the GPU deployment: one replica per ``gpus_per_replica`` GPUs, as many
ongoing requests as the replica's session capacity (every session and every REST request holds
one place for its life), the queue per caller, autoscaling on those places or a fixed count, and
a drain long enough for the longest session. ``ingress_options`` is the light front: always on,
pinned to the Ray head (which never scales away), with room for every open socket.
"""

from __future__ import annotations

import math
from typing import Any

from orchestrator.config import AppConfig
from orchestrator.scale.capacity import Capacity

HEAD_RESOURCE = "node:__internal_head__"  # Ray's own resource on the head node
ROUTER_CLASS = "orchestrator.scale.router.WarmFirstRouter"
REPLICA = "VoiceReplica"
INGRESS = "VoiceIngress"


def replica_options(config: AppConfig, capacity: Capacity) -> dict[str, Any]:
    scale = config.scale
    options: dict[str, Any] = {
        "name": REPLICA,
        "ray_actor_options": {
            "num_gpus": scale.gpus_per_replica,
            "num_cpus": scale.cpus_per_replica,
        },
        "max_ongoing_requests": capacity.sessions,
        "max_queued_requests": scale.max_queued_sessions,
        "graceful_shutdown_timeout_s": scale.drain_s(config.sessions.max_minutes),
        "request_router_config": {
            "request_router_class": ROUTER_CLASS,
            "request_routing_stats_period_s": scale.routing_stats_period_s,
        },
    }
    if scale.replicas is not None:
        options["num_replicas"] = scale.replicas
    else:
        options["autoscaling_config"] = autoscaling(config, capacity)
    return options


def autoscaling(config: AppConfig, capacity: Capacity) -> dict[str, Any]:
    """Ray Serve's ``autoscaling_config``: scale on open sessions per replica."""
    scale = config.scale
    found: dict[str, Any] = {
        "min_replicas": scale.min_replicas,
        "max_replicas": scale.max_replicas,
        "target_ongoing_requests": max(1.0, math.floor(capacity.sessions * scale.target_fill)),
        "upscale_delay_s": scale.upscale_delay_s,
        "downscale_delay_s": scale.downscale_delay_s,
    }
    if scale.initial_replicas is not None:
        found["initial_replicas"] = scale.initial_replicas
    if scale.downscale_to_zero_delay_s is not None:
        found["downscale_to_zero_delay_s"] = scale.downscale_to_zero_delay_s
    return found


def ingress_options(config: AppConfig) -> dict[str, Any]:
    return {
        "name": INGRESS,
        "num_replicas": config.scale.ingress_replicas,
        # it relays every open session: it drains as long as a replica does
        "graceful_shutdown_timeout_s": config.scale.drain_s(config.sessions.max_minutes),
        "max_ongoing_requests": config.scale.ingress_max_sessions,
        "ray_actor_options": {"num_cpus": 0, "resources": {HEAD_RESOURCE: 0.001}},
    }
