"""Which steps tell a person something: transitions derived from a decision and the phase before."""

from __future__ import annotations

import dataclasses

from reconciler import engine, model
from reconciler import status as view
from reconciler.model import Phase
from tests.unit.plannerkit import NEW, OLD, REV, T0, deployment


def status(phase: Phase) -> view.StackStatus:
    return view.StackStatus("biglearn-api", "f.yaml", REV, deployment(), phase=phase)


def kinds(before: Phase, decision: model.Decision) -> list[str]:
    return [t.kind for t in engine.transitions(status(before), decision, T0)]


def test_starting_a_rollout_is_told_with_the_stack_revision_and_image() -> None:
    d = model.Decision(Phase.MIGRATING, "phase 1", effects=(model.StartRollout(NEW, REV, OLD, T0),))
    (told,) = engine.transitions(status(Phase.IN_SYNC), d, T0)
    assert (told.kind, told.stack, told.revision, told.image) == (
        "rollout_started",
        "Stack1",
        REV,
        NEW,
    )
    assert told.key == f"biglearn-api|{REV}|rollout_started"


def test_a_failed_migration_is_told_as_both_migration_and_rollout_failure() -> None:
    failure = model.Failure(1, "migration for x failed", T0, T0, REV, NEW)
    d = model.Decision(Phase.FAILED, "x", effects=(model.RecordFailure(failure),))
    assert kinds(Phase.MIGRATING, d) == ["migration_failed", "rollout_failed"]


def test_entering_and_leaving_a_pause_are_told() -> None:
    assert kinds(Phase.IN_SYNC, model.Decision(Phase.PAUSED, "p")) == ["paused"]
    assert kinds(Phase.PAUSED, model.Decision(Phase.MIGRATING, "m")) == ["resumed"]


def test_staying_in_a_phase_tells_nothing() -> None:
    assert kinds(Phase.BLOCKED, model.Decision(Phase.BLOCKED, "still")) == []
    assert kinds(Phase.AWAITING_APPROVAL, model.Decision(Phase.AWAITING_APPROVAL, "x")) == []


def test_switch_and_success_are_told() -> None:
    d = model.Decision(
        Phase.IN_SYNC,
        "done",
        effects=(
            model.MarkRollout(switched_at=T0),
            model.FinishRollout("succeeded", T0),
        ),
    )
    assert kinds(Phase.UPDATING_API, d) == ["switched", "rollout_succeeded"]
    assert dataclasses.is_dataclass(engine.transitions(status(Phase.IN_SYNC), d, T0)[0])
