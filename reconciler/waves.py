"""Waves: whose turn it is in a fleet (`kind: Fleet`), judged from the whole fleet.

Rules of this file:
- Pure, like the planner: members, the fleet's stored memory and `now` come in; a verdict
  comes out. The engine gathers the members (their memory from the shared store, so that
  replicas judge alike) and takes a slot atomically (`StateStore.start_member`) before
  acting on a "go": this file orders the steps, the store enforces the count.
- A member of step k may start only when every member of the steps before k is done (in
  sync, failed within the budget, or paused) and the fleet's bake has passed since the
  last of them finished; and only while fewer than the step's limit are under way.
- A failure counts toward the budget when it is for the member's desired image and came
  after the fleet's last lift (the epoch). One more than the budget halts the fleet.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence

from reconciler import model, spec


@dataclasses.dataclass(frozen=True)
class Member:
    """One spec of a fleet, as the fleet needs to see it."""

    name: str
    step: int  # 0-based
    image: str  # desired
    memory: model.Memory
    in_sync: bool  # the API group runs the desired image and no rollout of ours is open
    paused: bool = False
    blocked: bool = False  # Blocked while out of sync (known only to the replica driving it)

    @property
    def in_flight(self) -> bool:
        r = self.memory.rollout
        return r is not None and r.active

    def failed(self, epoch: dt.datetime | None) -> bool:
        f = self.memory.failure
        counted = f is not None and f.image == self.image and (epoch is None or f.at >= epoch)
        return counted or (self.blocked and not self.in_sync and not self.in_flight)

    def done(self, epoch: dt.datetime | None) -> bool:
        """Finished for the waves: the next step need not wait for it."""
        if self.in_flight:
            return False
        return self.in_sync or self.paused or self.failed(epoch)

    def finished_at(self) -> dt.datetime | None:
        """When its rollout toward the desired image ended (for the fleet's bake)."""
        r = self.memory.rollout
        if r is None or r.active or r.image != self.image:
            return None
        return r.finished_at


@dataclasses.dataclass(frozen=True)
class Step:
    index: int  # 0-based
    limit: int
    members: tuple[Member, ...]


def steps(fleet: spec.FleetSpec, members: Sequence[Member]) -> list[Step]:
    """The fleet's steps in order, each with its members and its limit (empty steps too,
    except the implicit last one when no member falls into it)."""
    count = len(fleet.steps) + 1
    grouped: list[list[Member]] = [[] for _ in range(count)]
    for m in sorted(members, key=lambda m: m.name):
        grouped[m.step].append(m)
    if not grouped[-1]:
        count -= 1
    return [Step(i, fleet.step(i).limit(len(grouped[i])), tuple(grouped[i])) for i in range(count)]


def signature(members: Sequence[Member]) -> str:
    """The members' desired images: a budget halt lifts when a commit changes any."""
    text = ",".join(f"{m.name}={m.image}" for m in sorted(members, key=lambda m: m.name))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def failed(members: Sequence[Member], epoch: dt.datetime | None) -> list[Member]:
    return [m for m in sorted(members, key=lambda m: m.name) if m.failed(epoch)]


def over_budget(
    name: str, fleet: spec.FleetSpec, members: Sequence[Member], memory: model.FleetMemory
) -> str | None:
    """The reason to halt, when failures exceed the budget (and it is not halted yet)."""
    down = failed(members, memory.epoch)
    if memory.halt is not None or len(down) <= fleet.failure_budget:
        return None
    names = ", ".join(m.name for m in down[:5]) + (", ..." if len(down) > 5 else "")
    return (
        f"{len(down)} failed member(s) ({names}), more than failureBudget "
        f"{fleet.failure_budget}: `reconciler retry --fleet {name}` or a new image lifts it"
    )


def lifts(memory: model.FleetMemory, members: Sequence[Member]) -> bool:
    """A budget halt lifts on a commit that changes a member's image; a person's does not."""
    halt = memory.halt
    return halt is not None and halt.by == "budget" and halt.images != signature(members)


def turn(
    name: str,
    fleet: spec.FleetSpec,
    members: Sequence[Member],
    memory: model.FleetMemory,
    who: str,
    now: dt.datetime,
) -> model.Turn:
    """May member `who` start a rollout now? (It is out of sync; the planner asks.)"""
    all_steps = steps(fleet, members)
    me = next(m for m in members if m.name == who)
    mine = all_steps[me.step]
    label = f"fleet {name} step {me.step + 1}"

    def wait(message: str, halted: bool = False) -> model.Turn:
        return model.Turn(name, me.step + 1, False, message, halted, mine.limit)

    if memory.halt is not None:
        return wait(f"fleet {name} halted: {memory.halt.reason}", halted=True)
    if me.in_flight:
        return model.Turn(name, me.step + 1, True, "", limit=mine.limit)
    last: dt.datetime | None = None
    for earlier in all_steps[: me.step]:
        waiting = [m.name for m in earlier.members if not m.done(memory.epoch)]
        if waiting:
            shown = ", ".join(waiting[:3]) + (", ..." if len(waiting) > 3 else "")
            return wait(
                f"{label} waits for step {earlier.index + 1}: "
                f"{len(waiting)} of {len(earlier.members)} not done ({shown})"
            )
        ends = [t for m in earlier.members if (t := m.finished_at()) is not None]
        if ends:
            last = max([last, *ends]) if last else max(ends)
    if fleet.bake is not None and last is not None and now < last + fleet.bake:
        return wait(
            f"{label} waits for the fleet's bake: the steps before it finished at "
            f"{last.isoformat()}, it starts at {(last + fleet.bake).isoformat()}"
        )
    busy = [m.name for m in mine.members if m.in_flight and m.name != who]
    if len(busy) >= mine.limit:
        return wait(
            f"{label}: {len(busy)} of at most {mine.limit} under way ({', '.join(busy[:3])})"
        )
    return model.Turn(name, me.step + 1, True, "", limit=mine.limit)


@dataclasses.dataclass(frozen=True)
class StepView:
    """One step as status, plan and the metrics show it."""

    index: int  # 1-based
    limit: int
    members: tuple[str, ...]
    in_flight: tuple[str, ...]
    failed: tuple[str, ...]
    done: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class FleetView:
    name: str
    file: str
    stale: bool
    steps: tuple[StepView, ...]
    halt: model.Halt | None
    failure_budget: int
    failed: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        halt = self.halt
        return {
            "name": self.name,
            "file": self.file,
            "stale": self.stale,
            "halted": halt is not None,
            "halt": None
            if halt is None
            else {"reason": halt.reason, "at": _iso(halt.at), "by": halt.by},
            "failureBudget": self.failure_budget,
            "failed": list(self.failed),
            "inFlight": [n for s in self.steps for n in s.in_flight],
            "steps": [
                {
                    "step": s.index,
                    "maxConcurrent": s.limit,
                    "members": list(s.members),
                    "inFlight": list(s.in_flight),
                    "failed": list(s.failed),
                    "done": list(s.done),
                }
                for s in self.steps
            ],
        }


def view(
    name: str,
    loaded_file: str,
    stale: bool,
    fleet: spec.FleetSpec,
    members: Sequence[Member],
    memory: model.FleetMemory,
) -> FleetView:
    epoch = memory.epoch
    shown = [
        StepView(
            s.index + 1,
            s.limit,
            tuple(m.name for m in s.members),
            tuple(m.name for m in s.members if m.in_flight),
            tuple(m.name for m in s.members if m.failed(epoch)),
            tuple(m.name for m in s.members if m.done(epoch)),
        )
        for s in steps(fleet, members)
    ]
    return FleetView(
        name,
        loaded_file,
        stale,
        tuple(shown),
        memory.halt,
        fleet.failure_budget,
        tuple(m.name for m in failed(members, epoch)),
    )


def _iso(t: dt.datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def members_by_fleet(
    memberships: Mapping[str, tuple[str, int]],
) -> dict[str, list[tuple[str, int]]]:
    out: dict[str, list[tuple[str, int]]] = {}
    for member, (fleet, step) in sorted(memberships.items()):
        out.setdefault(fleet, []).append((member, step))
    return out
