"""The one writer of the hibernation state: it applies the ladder's transitions to the world.

Every change goes through ``handle`` in one task (``run``), in the order requests arrived:
data-path activity, session open/close, scheduler ticks, operator orders and finished loads.
Each transition is carried out (unload by role, park by role, stop managed processes, host
power), measured (memory before and after), stored, and published. The fleet is reached
through a small effects protocol, so this module knows roles and states, never engines (a name
is only quoted in logs).

A load that finishes while the state keeps its role unloaded or parked (a pre-warm that was in
flight when the ladder went down: the transition recorded "already loading") is reconciled: the
writer unloads (or parks) the role again at once. The fleet skips engines that are leased,
waited for or pinned, so a load a request is waiting for is never undone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from orchestrator.config import StateActions
from orchestrator.core.events import EventBus
from orchestrator.core.idle import ORDER, IdleState
from orchestrator.core.store import StateStore, TransitionRecord
from orchestrator.hibernation.host_power import HostPower
from orchestrator.hibernation.ladder import Ladder, Transition
from services.base import Role
from services.tasks import TaskSet

log = logging.getLogger(__name__)

SAVE_EVERY_S = 10.0


class Effects(Protocol):
    """What the hibernator may do to the engines (the fleet implements it)."""

    async def unload_roles(self, roles: Iterable[Role]) -> list[Any]: ...

    async def park_roles(self, roles: Iterable[Role]) -> list[Any]: ...

    async def stop_managed(self) -> list[Any]: ...

    async def memory_snapshot(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class _Command:
    kind: str
    at: float
    session: str = ""
    state: IdleState | None = None
    until: float = 0.0
    cause: str = ""
    role: Role | None = None


class Hibernator:
    def __init__(
        self,
        ladder: Ladder,
        actions: dict[IdleState, StateActions],
        effects: Effects,
        host: HostPower,
        store: StateStore,
        bus: EventBus,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ladder = ladder
        self._actions = actions
        self._effects = effects
        self._host = host
        self._store = store
        self._bus = bus
        self._clock = clock
        self._inbox: asyncio.Queue[tuple[_Command, asyncio.Future[Transition | None] | None]]
        self._inbox = asyncio.Queue()
        self._tasks = TaskSet("hibernator")
        self._saved_at = 0.0
        self._saved_activity = ladder.last_activity
        self.listeners: list[Callable[[IdleState, StateActions], None]] = []
        # Blocking record keepers (the credit ledger); they run in a worker thread.
        self.record_listeners: list[Callable[[TransitionRecord], None]] = []

    @classmethod
    def restore(cls, ladder: Ladder, store: StateStore, **kwargs: Any) -> Hibernator:
        """Build with the ladder state saved by the previous run, if any."""
        saved = store.get("ladder")
        if saved:
            ladder.state = IdleState(saved["state"])
            ladder.last_activity = float(saved["last_activity"])
            ladder.keep_awake_until = float(saved["keep_awake_until"])
            ladder.floor = IdleState(saved["floor"])
        return cls(ladder, store=store, **kwargs)

    @property
    def state(self) -> IdleState:
        return self.ladder.state

    def actions_for(self, state: IdleState) -> StateActions:
        return self._actions[state]

    def unloaded_roles(self, state: IdleState) -> set[Role]:
        """The roles ``state`` keeps unloaded: its own and every shallower state's (a deeper
        state also does what the shallower ones did; ACTIVE is never entered going down)."""
        return {role for s in ORDER[1 : state.depth + 1] for role in self._actions[s].unload_roles}

    def parked_roles(self, state: IdleState) -> set[Role]:
        """The roles ``state`` keeps parked (likewise cumulative); unloading wins over parking."""
        passed = ORDER[1 : state.depth + 1]
        parked = {role for s in passed for role in self._actions[s].park_roles}
        return parked - self.unloaded_roles(state)

    # -- requests from everyone else (never block) -------------------------------------------

    def note_activity(self) -> None:
        self._send(_Command("activity", self._clock()))

    def session_opened(self, session_id: str) -> None:
        self._send(_Command("open", self._clock(), session=session_id))

    def session_closed(self, session_id: str) -> None:
        self._send(_Command("close", self._clock(), session=session_id))

    def tick(self) -> None:
        self._send(_Command("tick", self._clock()))

    def engine_loaded(self, role: Role, engine: str = "") -> None:
        """A load finished (the fleet tells): unload it again if the state keeps ``role`` off."""
        self._send(_Command("loaded", self._clock(), role=role, cause=engine))

    async def keep_awake(self, seconds: float, cause: str = "operator") -> Transition | None:
        now = self._clock()
        return await self._ask(_Command("keep_awake", now, until=now + seconds, cause=cause))

    async def force(self, state: IdleState, cause: str = "operator") -> Transition | None:
        return await self._ask(_Command("force", self._clock(), state=state, cause=cause))

    def _send(self, command: _Command) -> None:
        self._inbox.put_nowait((command, None))

    async def _ask(self, command: _Command) -> Transition | None:
        future: asyncio.Future[Transition | None] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait((command, future))
        return await future

    # -- the writer --------------------------------------------------------------------------

    def start(self) -> None:
        self._tasks.spawn("writer", self.run())

    async def stop(self) -> None:
        await self._tasks.cancel_all()
        await asyncio.to_thread(self._save)

    async def run(self) -> None:
        while True:
            command, reply = await self._inbox.get()
            try:
                transition = await self.handle(command)
            except Exception as exc:
                log.exception("hibernation command %s failed", command.kind)
                if reply is not None and not reply.done():
                    reply.set_exception(exc)
            else:
                if reply is not None and not reply.done():
                    reply.set_result(transition)
            finally:
                self._inbox.task_done()

    async def settled(self) -> None:
        """Wait until every request sent so far has been handled by the running writer."""
        await self._inbox.join()

    async def handle(self, command: _Command) -> Transition | None:
        ladder, now = self.ladder, command.at
        transition: Transition | None
        if command.kind == "activity":
            transition = ladder.activity(now)
        elif command.kind == "open":
            transition = ladder.session_opened(command.session, now)
        elif command.kind == "close":
            ladder.session_closed(command.session, now)
            transition = None
        elif command.kind == "keep_awake":
            transition = ladder.keep_awake(command.until, now)
        elif command.kind == "force":
            assert command.state is not None
            transition = ladder.force(command.state, now, f"{command.cause}: {command.state}")
        elif command.kind == "loaded":
            assert command.role is not None
            await self._reconcile(command.role, command.cause)
            return None
        else:
            transition = ladder.tick(now)
        if transition is not None:
            await self._apply(transition)
        elif now - self._saved_at >= SAVE_EVERY_S and ladder.last_activity != self._saved_activity:
            await asyncio.to_thread(self._save)
        return transition

    async def _apply(self, transition: Transition) -> None:
        started = time.perf_counter()
        before = await self._effects.memory_snapshot()
        actions = await self._carry_out(transition)
        after = await self._effects.memory_snapshot()
        record = TransitionRecord(
            at=transition.at,
            source=transition.source,
            target=transition.target,
            cause=transition.cause,
            actions=actions,
            memory_before=before,
            memory_after=after,
            seconds=round(time.perf_counter() - started, 4),
        )
        await asyncio.to_thread(self._store.add_transition, record)
        await asyncio.to_thread(self._save)
        log.info(
            "hibernation %s -> %s (%s): %d action(s), RSS %+.1f MB",
            transition.source,
            transition.target,
            transition.cause,
            len(actions),
            (after["rss_bytes"] - before["rss_bytes"]) / 1e6,
        )
        for keeper in self.record_listeners:
            await asyncio.to_thread(keeper, record)
        self._bus.publish("hibernation.transition", **asdict(record))
        for listener in self.listeners:
            listener(transition.target, self._actions[transition.target])

    async def _reconcile(self, role: Role, engine: str) -> None:
        """Unload (or park) ``role`` again when the current state keeps it so. Not a transition:
        nothing is stored, but what was done is logged and published."""
        state = self.ladder.state
        if role in self.unloaded_roles(state):
            actions = [_outcome("unload", o) for o in await self._effects.unload_roles([role])]
        elif role in self.parked_roles(state):
            actions = [_park_outcome(o) for o in await self._effects.park_roles([role])]
        else:
            return
        done = [f"{a['target']} ({a['action']})" for a in actions if a["ok"]]
        log.info(
            "hibernation %s: %s (%s) finished loading; taken off again: %s",
            state,
            engine or "an engine",
            role,
            ", ".join(done) or "nothing (in use or pinned)",
        )
        self._bus.publish(
            "hibernation.reconciled",
            state=state.value,
            role=role.value,
            engine=engine,
            actions=actions,
        )

    async def _carry_out(self, transition: Transition) -> list[dict[str, Any]]:
        """Do what each state passed on the way down asks for; waking does nothing here."""
        passed = transition.passed()
        roles = {role for state in passed for role in self._actions[state].unload_roles}
        parked = {role for state in passed for role in self._actions[state].park_roles} - roles
        results: list[dict[str, Any]] = []
        if roles:  # first: an unload may give back host RAM a park needs
            for outcome in await self._effects.unload_roles(sorted(roles)):
                results.append(_outcome("unload", outcome))
        if parked:
            for park in await self._effects.park_roles(sorted(parked)):
                results.append(_park_outcome(park))
        if any(self._actions[state].stop_processes for state in passed):
            for outcome in await self._effects.stop_managed():
                results.append(_outcome("stop_process", outcome))
        if any(self._actions[state].host_power_off for state in passed):
            power = await self._host.power_off()
            results.append(
                {
                    "action": "host_power_off",
                    "target": self._host.name,
                    "ok": power.ok,
                    "detail": power.detail,
                }
            )
        return results

    def _save(self) -> None:
        ladder = self.ladder
        self._store.put(
            "ladder",
            {
                "state": ladder.state.value,
                "last_activity": ladder.last_activity,
                "keep_awake_until": ladder.keep_awake_until,
                "floor": ladder.floor.value,
            },
        )
        self._saved_at = self._clock()
        self._saved_activity = ladder.last_activity


def _outcome(action: str, outcome: Any) -> dict[str, Any]:
    report = getattr(outcome, "report", None)
    return {
        "action": action,
        "target": outcome.engine,
        "ok": bool(outcome.unloaded),
        "detail": outcome.reason or "done",
        "seconds": round(report.seconds, 4) if report else None,
        "ram_freed_bytes": report.ram_freed_bytes if report else None,
        "vram_freed_bytes": report.vram_freed_bytes if report else None,
    }


def _park_outcome(outcome: Any) -> dict[str, Any]:
    """A park as a transition records it: ``park``, or ``unload`` where the engine could not
    park (its ``detail`` says why)."""
    parked, unloaded = outcome.parked, outcome.unloaded
    report = parked or unloaded
    return {
        "action": "unload" if unloaded is not None else "park",
        "target": outcome.engine,
        "ok": bool(outcome.done),
        "detail": outcome.reason or "done",
        "seconds": round(report.seconds, 4) if report else None,
        "ram_kept_bytes": parked.ram_kept_bytes if parked else None,
        "ram_freed_bytes": unloaded.ram_freed_bytes if unloaded else None,
        "vram_freed_bytes": report.vram_freed_bytes if report else None,
    }
