"""``console unlock``: end the console's sign-in lock-outs, from the host, without a password.

The failed sign-ins live in the state database (``console.throttle``), so this works with the
server running (its next attempt reads them) or stopped. Whoever may read the state directory
may do it: the console password and the session key are there too. The unlock is audited.
"""

from __future__ import annotations

import argparse
import getpass
import time
from datetime import datetime

from console.audit import AuditEntry, AuditLog
from console.throttle import LoginThrottle
from orchestrator.config import AppConfig
from orchestrator.core.store import state_database

NAME = "console"
HELP = "the web console, on this host: `console unlock` ends sign-in lock-outs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action", choices=["unlock"], help="unlock: forget failed sign-ins, ending lock-outs"
    )
    parser.add_argument("--user", metavar="NAME", help="only this user name's (default: all)")


def run(args: argparse.Namespace, config: AppConfig) -> int:
    path = state_database(config.state.dir)
    whose = f" of {args.user}" if args.user else ""
    if not path.exists():
        print(f"no state database at {path}: no failed sign-ins{whose} to clear")
        return 0
    throttle = LoginThrottle(path)
    try:
        cleared = throttle.unlock(args.user)
    finally:
        throttle.close()
    for each in cleared:
        last = datetime.fromtimestamp(each.last_at).isoformat(sep=" ", timespec="seconds")
        print(
            f"cleared {each.failures} failed sign-in(s) of {each.user!r} from {each.source}"
            f" (the last at {last})"
        )
    if not cleared:
        print(f"no failed sign-ins{whose} to clear")
    audit = AuditLog(path)
    try:
        audit.add(
            AuditEntry(
                at=time.time(),
                actor=getpass.getuser(),
                via="cli",
                remote="host",
                action="unlock",
                target=args.user or "",
                details={"cleared": sum(each.failures for each in cleared)},
            )
        )
    finally:
        audit.close()
    return 0
