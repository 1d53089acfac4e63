"""``[duplex]``: how full-duplex sessions are routed between the duplex engine and the cascade.

    policy          duplex-first   the duplex engine when it is loaded and free, else the cascade
                    cascade-only   never the duplex engine
                    duplex-only    the duplex engine or nothing (busy: 503, the client retries)

The duplex engine holds one conversation at a time; every other session goes to the cascade at
once, so no client waits silently on a busy server.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Policy = Literal["duplex-first", "cascade-only", "duplex-only"]


class DuplexConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: Policy = "duplex-first"
    engine: str = "duplex"  # the [engines.NAME] whose role is duplex
    failover: bool = True  # a failed duplex engine hands its session to the cascade
    hang_timeout_s: Annotated[float, Field(gt=0)] = 2.0  # no audio back this long: hung
    wake_duplex: bool = True  # a session sent to the cascade because it was cold loads it
