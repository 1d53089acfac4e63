"""What EC2 says of an instance, in the words of the provider contract. Pure: no SDK here.

    EC2 state       PowerState   HostView
    pending         STARTING
    running         RUNNING      url http://<private IP>:<port> (the public IP with use_public_ip)
    stopping        STOPPING
    shutting-down   STOPPING     on its way to terminated
    stopped         STOPPED      "stopped outside the gateway" if it was seen running and the
                                 gateway did not stop it ("(spot interruption)" for Spot)
    terminated      STOPPED      detail "terminated ...": it can never start again

The detail ends with EC2's own reason for the last change (``StateReason``), when it gives one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.gateway.providers.base import HostView, PowerState

STATES = {
    "pending": PowerState.STARTING,
    "running": PowerState.RUNNING,
    "stopping": PowerState.STOPPING,
    "shutting-down": PowerState.STOPPING,
    "stopped": PowerState.STOPPED,
    "terminated": PowerState.STOPPED,
}
UP = frozenset({"pending", "running"})
GONE = frozenset({"terminated", "shutting-down"})

Instance = dict[str, Any]  # one entry of DescribeInstances' Reservations[].Instances[]


def ec2_state(instance: Instance) -> str:
    return str(instance.get("State", {}).get("Name", "unknown"))


def state_reason(instance: Instance) -> tuple[str, str]:
    """(code, message) of the instance's last state change; empty strings when there is none."""
    reason = instance.get("StateReason") or {}
    code = str(reason.get("Code") or "")
    return code, str(reason.get("Message") or code)


def host_view(instance: Instance, *, port: int, use_public_ip: bool, watched: bool) -> HostView:
    """The instance as the controller sees it; ``watched``: seen running, not stopped by us."""
    iid = str(instance["InstanceId"])
    name = ec2_state(instance)
    state = STATES.get(name, PowerState.UNKNOWN)
    code, message = state_reason(instance)
    parts = [name]
    url = None
    if state is PowerState.RUNNING:
        field = "PublicIpAddress" if use_public_ip else "PrivateIpAddress"
        address = instance.get(field)
        if address:
            url = f"http://{address}:{port}"
        else:
            parts.append(f"no {field} yet")
    else:
        if watched and state in (PowerState.STOPPED, PowerState.STOPPING):
            spot = instance.get("InstanceLifecycle") == "spot" or code.startswith("Server.Spot")
            parts.append("stopped outside the gateway" + (" (spot interruption)" if spot else ""))
        if message:
            parts.append(message)
    return HostView(state, url=url, instance=iid, detail="; ".join(parts))


def pick(ids: Sequence[str], found: Mapping[str, Instance], active: str | None) -> str:
    """The instance to report: one that runs or boots (the active one first), else the active
    one, else one that is stopping, else the preferred one."""
    up = [iid for iid in ids if ec2_state(found[iid]) in UP]
    if up:
        return active if active in up else up[0]
    if active is not None:
        return active
    stopping = [iid for iid in ids if STATES.get(ec2_state(found[iid])) is PowerState.STOPPING]
    return stopping[0] if stopping else ids[0]
