"""Transitions: what a step changed that a person may want to hear about.

Rules of this file:
- Kinds derive from effects, reason codes and phases, never from a message's wording.
- Pure: the engine hands in what the stack was and what was decided, and tells listeners.
- Adding a kind: `model.TransitionKind`, a table here, and its title in notify.TELLING.
- A drift is told from the engine's judgement of the groups, not from a decision
  (`drifted`): it happens to a stack whatever the planner does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence

from reconciler import model, spec
from reconciler.model import Phase
from reconciler.reasons import Reason

# What a recorded failure tells besides rollout_failed, by its code (in telling order).
_FAILED: Mapping[Reason, tuple[model.TransitionKind, ...]] = {
    Reason.MIGRATION_FAILED: ("migration_failed", "rollout_failed"),
    Reason.MIGRATION_TIMED_OUT: ("migration_failed", "rollout_failed"),
    Reason.ROLLED_BACK: ("rollout_failed", "rolled_back"),
    Reason.ALARM_IN_BAKE: ("alarm_in_bake", "rollout_failed"),
}
_ROLLOUT_FAILED: tuple[model.TransitionKind, ...] = ("rollout_failed",)

# Entering a phase for one of these reasons is told (staying in it is not).
_ENTERED: Mapping[Reason, model.TransitionKind] = {
    Reason.AWAITING_APPROVAL: "awaiting_approval",
    Reason.MISSING_STACK: "blocked",
    Reason.STACK_BROKEN: "blocked",
    Reason.UNKNOWN_STACK_STATUS: "blocked",
    Reason.BAD_PARAMETER_NAMES: "blocked",
    Reason.RESOURCE_PROBLEM: "blocked",
    Reason.MISSING_ALARM: "blocked",
    Reason.ROLLBACK_UNSAFE: "blocked",
    Reason.DRIFTED: "blocked",  # rollout.onDrift hold: the rollout waits for a person
    Reason.ALARM_HOLDING: "held_by_alarm",
    Reason.ALARM_IN_BAKE: "alarm_in_bake",  # rolled back: the failure's code says rolled_back
    Reason.PAUSED_IN_SPEC: "paused",
    Reason.PAUSED_BY_OPERATOR: "paused",
}


def derive(
    name: str,
    revision: str,
    sp: spec.Spec,
    before: Phase,
    decision: model.Decision,
    now: dt.datetime,
) -> list[model.Transition]:
    """The transitions of one step of spec `name`, whose stack was in phase `before`."""
    kinds = [*_of_effects(decision.effects), *_of_phases(before, decision)]
    return [
        model.Transition(
            name, sp.stack_name, sp.region, revision, k, sp.image, decision.message, now
        )
        for k in dict.fromkeys(kinds)
    ]


def _of_effects(effects: tuple[model.Effect, ...]) -> list[model.TransitionKind]:
    """Rollout milestones: what the step stores says what happened."""
    kinds: list[model.TransitionKind] = []
    for effect in effects:
        match effect:
            case model.StartRollout():
                kinds.append("rollout_started")
            case model.MarkRollout(migrated_at=dt.datetime()):
                kinds.append("migration_succeeded")
            case model.MarkRollout(switched_at=dt.datetime()):
                kinds.append("switched")
            case model.FinishRollout(result="succeeded"):
                kinds.append("rollout_succeeded")
            case model.RecordFailure(failure=f):
                kinds.extend(_FAILED.get(f.code, _ROLLOUT_FAILED))
    return kinds


def _of_phases(before: Phase, decision: model.Decision) -> list[model.TransitionKind]:
    """Entering a phase a person acts on (approve, unblock, unpause), and leaving a pause."""
    if decision.phase == before:
        return []
    kinds: list[model.TransitionKind] = []
    if decision.reason in _ENTERED:
        kinds.append(_ENTERED[decision.reason])
    if before == Phase.PAUSED:
        kinds.append("resumed")
    return kinds


def drifted(
    name: str,
    revision: str,
    sp: spec.Spec,
    drift: Sequence[model.Drift],
    before: Sequence[model.Drift],
    updated: dt.datetime | None,
    now: dt.datetime,
) -> list[model.Transition]:
    """One `drifted` per drift judged now and not at the last judgement. Keyed by what
    drifted (and the stack update it drifted from, `updated`), not by the revision: the
    same drift is told once, however many commits pass, and a new one again."""
    return [
        model.Transition(
            name,
            sp.stack_name,
            sp.region,
            revision,
            "drifted",
            sp.image,
            f"{d.describe()} (changed outside CloudFormation; rollout.onDrift: "
            f"{sp.rollout.on_drift})",
            now,
            subject=_drift_subject(d, updated),
        )
        for d in drift
        if d not in before
    ]


def _drift_subject(d: model.Drift, updated: dt.datetime | None) -> str:
    # Hashed: a list of suspended processes would make a long outbox key.
    stamp = updated.isoformat() if updated is not None else ""
    text = "|".join((d.resource, d.field, d.expected, d.live, stamp))
    return "drift-" + hashlib.sha256(text.encode()).hexdigest()[:20]
