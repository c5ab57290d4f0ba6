"""Which steps tell a person something: transitions derived from a decision's effects and
reason code, and the phase before; never from a message's wording."""

from __future__ import annotations

import dataclasses

import pytest

from reconciler import model, planner, transitions
from reconciler.model import Phase
from reconciler.reasons import Reason
from tests.unit.plannerkit import (
    NEW,
    OLD,
    REV,
    T0,
    deployment,
    healthy,
    minutes,
    observed,
    rollout,
    stack,
)


def told(before: Phase, decision: model.Decision) -> list[model.Transition]:
    return transitions.derive("biglearn-api", REV, deployment().spec, before, decision, T0)


def kinds(before: Phase, decision: model.Decision) -> list[str]:
    return [t.kind for t in told(before, decision)]


def decision(phase: Phase, reason: Reason, *effects: model.Effect) -> model.Decision:
    return model.Decision(phase, "whatever the wording", reason=reason, effects=effects)


def failed(code: Reason, text: str = "any wording at all") -> model.Decision:
    failure = model.Failure(1, text, T0, T0, REV, NEW, code)
    return decision(Phase.FAILED, code, model.RecordFailure(failure))


def test_starting_a_rollout_is_told_with_the_stack_revision_and_image() -> None:
    d = decision(Phase.MIGRATING, Reason.MIGRATING, model.StartRollout(NEW, REV, OLD, T0))
    (t,) = told(Phase.IN_SYNC, d)
    assert (t.kind, t.stack, t.revision, t.image) == ("rollout_started", "Stack1", REV, NEW)
    assert t.key == f"biglearn-api|{REV}|rollout_started"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (Reason.MIGRATION_FAILED, ["migration_failed", "rollout_failed"]),
        (Reason.MIGRATION_TIMED_OUT, ["migration_failed", "rollout_failed"]),
        (Reason.ROLLED_BACK, ["rollout_failed", "rolled_back"]),
        (Reason.UNHEALTHY, ["rollout_failed"]),
        (Reason.UPDATE_ROLLED_BACK, ["rollout_failed"]),
        (Reason.UPDATE_TIMED_OUT, ["rollout_failed"]),
        (Reason.UPDATE_REFUSED, ["rollout_failed"]),
    ],
)
def test_a_failure_is_told_by_its_code(code: Reason, expected: list[str]) -> None:
    assert kinds(Phase.MIGRATING, failed(code)) == expected


def test_a_failure_is_told_by_its_code_whatever_its_wording() -> None:
    """A refusal quoting AWS's "migration ..." wording is no failed migration."""
    d = failed(Reason.UPDATE_REFUSED, "migration for x: rolled the API group back")
    assert kinds(Phase.UPDATING_API, d) == ["rollout_failed"]


def test_entering_and_leaving_a_pause_are_told() -> None:
    assert kinds(Phase.IN_SYNC, decision(Phase.PAUSED, Reason.PAUSED_IN_SPEC)) == ["paused"]
    by_operator = decision(Phase.PAUSED, Reason.PAUSED_BY_OPERATOR)
    assert kinds(Phase.IN_SYNC, by_operator) == ["paused"]
    assert kinds(Phase.PAUSED, decision(Phase.MIGRATING, Reason.MIGRATING)) == ["resumed"]


@pytest.mark.parametrize(
    "code",
    [
        Reason.MISSING_STACK,
        Reason.STACK_BROKEN,
        Reason.UNKNOWN_STACK_STATUS,
        Reason.BAD_PARAMETER_NAMES,
        Reason.RESOURCE_PROBLEM,
    ],
)
def test_becoming_blocked_is_told(code: Reason) -> None:
    assert kinds(Phase.MIGRATING, decision(Phase.BLOCKED, code)) == ["blocked"]


def test_staying_in_a_phase_tells_nothing() -> None:
    assert kinds(Phase.BLOCKED, decision(Phase.BLOCKED, Reason.STACK_BROKEN)) == []
    waiting = decision(Phase.AWAITING_APPROVAL, Reason.AWAITING_APPROVAL)
    assert kinds(Phase.AWAITING_APPROVAL, waiting) == []
    assert kinds(
        Phase.UPDATING_API, decision(Phase.AWAITING_APPROVAL, Reason.AWAITING_APPROVAL)
    ) == ["awaiting_approval"]


def test_switch_and_success_are_told() -> None:
    d = decision(
        Phase.IN_SYNC,
        Reason.ROLLOUT_SUCCEEDED,
        model.MarkRollout(switched_at=T0),
        model.FinishRollout("succeeded", T0),
    )
    assert kinds(Phase.UPDATING_API, d) == ["switched", "rollout_succeeded"]
    assert dataclasses.is_dataclass(told(Phase.IN_SYNC, d)[0])


def test_the_planners_automatic_rollback_is_told_as_failed_and_rolled_back() -> None:
    """From the planner's own decision, not a hand-made one."""
    switched = rollout(migrated_at=T0 - minutes(9), switched_at=T0 - minutes(8))
    obs = observed(stack(api=NEW, mig=NEW), instances=healthy(OLD))
    dep = deployment(rollout={"autoRollback": True})
    d = planner.plan(dep, REV, obs, model.Memory(rollout=switched), T0 + minutes(50))
    assert d.reason == Reason.ROLLED_BACK
    assert kinds(Phase.VERIFYING, d) == ["rollout_failed", "rolled_back"]


# --- drift ------------------------------------------------------------------------------

SCALED = model.Drift("Asg1", "desiredCapacity", "1", "3")
SUSPENDED = model.Drift("Asg1", "suspendedProcesses", "none", "Launch")


def drifted(
    now: list[model.Drift], before: list[model.Drift], revision: str = REV
) -> list[model.Transition]:
    return transitions.drifted("biglearn-api", revision, deployment().spec, now, before, T0, T0)


def test_each_new_drift_is_told_once_with_what_drifted() -> None:
    told_now = drifted([SCALED, SUSPENDED], [SCALED])
    assert [(t.kind, t.name, t.stack) for t in told_now] == [("drifted", "biglearn-api", "Stack1")]
    assert told_now[0].message.startswith("Asg1.suspendedProcesses: expected none, live Launch")
    assert drifted([SCALED], [SCALED]) == []


def test_a_drift_is_keyed_by_what_drifted_not_by_the_revision() -> None:
    """The outbox refuses a key it has seen: the same drift is told once whatever commits
    pass meanwhile, and a different one (another live value) is told again."""
    (first,) = drifted([SCALED], [])
    (later,) = drifted([SCALED], [], revision="c" * 40)
    (other,) = drifted([dataclasses.replace(SCALED, live="5")], [])
    assert first.key == later.key != other.key
    assert first.key.startswith("biglearn-api|drift-") and first.key.endswith("|drifted")


def test_a_drift_from_another_stack_update_is_told_again() -> None:
    (first,) = drifted([SCALED], [])
    (again,) = transitions.drifted(
        "biglearn-api", REV, deployment().spec, [SCALED], [], T0 + minutes(5), T0
    )
    assert first.key != again.key


def test_a_rollout_held_by_its_drift_is_told_as_blocked() -> None:
    assert kinds(Phase.IN_SYNC, decision(Phase.BLOCKED, Reason.DRIFTED)) == ["blocked"]
