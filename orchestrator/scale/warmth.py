"""Which replicas a new session should try first (pure, no Ray import).

Each replica reports its routing stats (``VoiceReplica.record_routing_stats``) every
``[scale] routing_stats_period_s``: its hibernation state and the session engines it has not
loaded. A replica whose engines are loaded answers a new session at once; a cold one must load
them first (seconds to minutes). So the router ranks the candidates Ray gives it (replicas
that are running; Ray itself skips a full one and compares queue lengths inside a rank):

    rank 1   warm: awake (ACTIVE or WARM) and every session engine loaded
    rank 2   cold, or not yet reported (a replica that just started)

Within a rank Ray takes the replica with the fewest ongoing sessions, so sessions spread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

AWAKE = frozenset({"active", "warm"})

Replica = TypeVar("Replica")


def is_warm(stats: Mapping[str, Any]) -> bool:
    return stats.get("state") in AWAKE and stats.get("cold") == []


def warm_first(
    replicas: Sequence[Replica], stats_of: Callable[[Replica], Mapping[str, Any]]
) -> list[list[Replica]]:
    """The candidates in ranks, warm ones first; empty ranks left out."""
    warm = [r for r in replicas if is_warm(stats_of(r))]
    cold = [r for r in replicas if not is_warm(stats_of(r))]
    return [rank for rank in (warm, cold) if rank]
