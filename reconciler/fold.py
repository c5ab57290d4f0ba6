"""The one fold: how an effect changes a spec's memory, and which records that changes.

Rules of this file:
- Everything an effect means lives here, once. The planner folds its own effects to chain
  rules within one step; both stores fold the same effects and write exactly the records
  the fold reports, never deciding anything about an effect themselves.
- Pure: standard library and `reconciler.model` only (no clock, no I/O), like the planner.
- An effect that makes no sense for the memory it meets (marking or finishing a rollout
  when none is active) changes nothing, the same in the planner and in every store.
- History is the store's, not the memory's (memory holds only the latest rollout), so a
  rollout that stops being the latest yet changes (superseded by a new start) is reported
  in `Folded.rollouts` for the store to write.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from typing import Literal

from reconciler import model

# A single record of a spec's memory, named as the field of model.Memory that holds it.
Record = Literal[
    "rollout",
    "pending",
    "failure",
    "approved_image",
    "runtime_pause",
    "window_override",
    "scaling_owned",
]

# Why a rollout ended when a new one started before it finished (in its history row).
SUPERSEDED_REASON = "superseded by a rollout to {image} (revision {revision})"


@dataclasses.dataclass(frozen=True)
class Folded:
    """Memory after effects, and what a store must write to hold it.

    `changed` names the records whose stored value must be rewritten from `memory` (deleted
    where it is now None or empty); `rollouts` are the rollout rows to write by id, oldest
    first: every rollout the effects created or changed, the superseded one included.
    """

    memory: model.Memory
    changed: frozenset[Record] = frozenset()
    rollouts: tuple[model.RolloutMemory, ...] = ()

    def then(self, effect: model.Effect) -> Folded:
        """This fold followed by one more effect: the changes of both, rows merged by id."""
        step = apply(self.memory, effect)
        rows = {r.id: r for r in self.rollouts} | {r.id: r for r in step.rollouts}
        return Folded(
            step.memory,
            self.changed | step.changed,
            tuple(rows[i] for i in sorted(rows)),
        )


def apply(memory: model.Memory, effect: model.Effect) -> Folded:
    """The memory once `effect` is stored, and the records that storing it writes."""
    r = memory.rollout
    active = r if r is not None and r.active else None
    match effect:
        case model.StartRollout():
            return _start(memory, effect, active)
        case model.MarkRollout():
            if active is None:
                return Folded(memory)
            marks = {f: getattr(effect, f) for f in model.MARK_TIMES}
            return _rollout(memory, active, **{k: v for k, v in marks.items() if v is not None})
        case model.FinishRollout(result=result, at=at, reason=reason):
            if active is None:
                return Folded(memory)
            return _rollout(memory, active, result=result, finished_at=at, reason=reason)
        case model.SetPending(pending=pending):
            return _set(memory, "pending", pending)
        case model.ClearPending():
            return _set(memory, "pending", None)
        case model.RecordFailure(failure=failure):
            return _set(memory, "failure", failure)
        case model.ClearFailure():
            return _set(memory, "failure", None)
        case model.ClearRuntimePause():
            return _set(memory, "runtime_pause", None)
        case model.ConsumeApproval():
            return _set(memory, "approved_image", None)
        case model.OwnScaling(processes=processes):
            return _set(memory, "scaling_owned", frozenset(processes))
        case model.DisownScaling(at=at):
            return _disown(memory, at)
    raise AssertionError(f"unknown effect {effect!r}")  # pragma: no cover


def apply_all(memory: model.Memory, effects: Iterable[model.Effect]) -> Folded:
    """`apply` over effects in order, as one batch: what a store writes in one transaction."""
    folded = Folded(memory)
    for effect in effects:
        folded = folded.then(effect)
    return folded


def _set(memory: model.Memory, record: Record, value: object) -> Folded:
    new = dataclasses.replace(memory, **{record: value})  # type: ignore[arg-type]
    return Folded(new, frozenset({record}))


def _rollout(memory: model.Memory, rollout: model.RolloutMemory, **changes: object) -> Folded:
    """The latest rollout with `changes`: the memory's record and its history row."""
    new = dataclasses.replace(rollout, **changes)  # type: ignore[arg-type]
    return Folded(dataclasses.replace(memory, rollout=new), frozenset({"rollout"}), (new,))


def _start(
    memory: model.Memory, effect: model.StartRollout, active: model.RolloutMemory | None
) -> Folded:
    """A new latest rollout; an unfinished one it replaces is finished as superseded (history
    must say so rather than show two active rollouts)."""
    rows: tuple[model.RolloutMemory, ...] = ()
    if active is not None:
        reason = SUPERSEDED_REASON.format(image=effect.image, revision=effect.revision)
        rows = (
            dataclasses.replace(active, result="superseded", finished_at=effect.at, reason=reason),
        )
    previous = memory.rollout
    new = model.RolloutMemory(
        id=previous.id + 1 if previous is not None else 1,
        image=effect.image,
        revision=effect.revision,
        from_image=effect.from_image,
        started_at=effect.at,
        phase1_started_at=effect.phase1_started_at,
        migrated_at=effect.migrated_at,
    )
    return Folded(dataclasses.replace(memory, rollout=new), frozenset({"rollout"}), (*rows, new))


def _disown(memory: model.Memory, at: dt.datetime) -> Folded:
    """The processes we suspended are seen resumed: none is ours any more, and the latest
    rollout, if it suspended them, records when (once; an older rollout is left alone)."""
    owned = _set(memory, "scaling_owned", frozenset())
    r = memory.rollout
    if r is None or r.scaling_suspended_at is None or r.scaling_resumed_at is not None:
        return owned
    stamped = _rollout(owned.memory, r, scaling_resumed_at=at)
    return Folded(stamped.memory, owned.changed | stamped.changed, stamped.rollouts)
