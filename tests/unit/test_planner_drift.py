"""rollout.onDrift in the planner: `hold` keeps a drifted stack from starting a rollout,
`report` (the default) decides as if there were no drift; the gate reads only
Observed.drift, which the engine judged."""

from __future__ import annotations

import dataclasses
import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler import model, planner
from reconciler.model import Drift, Phase
from reconciler.reasons import Reason
from tests.unit.plannerkit import (
    NEW,
    REV,
    T0,
    deployment,
    minutes,
    observed,
    record,
    rollout,
    stack,
)
from tests.unit.test_planner_properties import IMAGES, memories, observations

SCALED = Drift("Asg1", "desiredCapacity", "1", "3")
SUSPENDED = Drift("MigrationAsg", "suspendedProcesses", "none", "Launch")
HOLD = {"rollout": {"onDrift": "hold"}}


def decide(
    obs: model.Observed,
    drift: tuple[Drift, ...] | None,
    memory: model.Memory | None = None,
    now: dt.datetime = T0,
    **overrides: object,
) -> model.Decision:
    return planner.plan(
        deployment(**overrides),  # type: ignore[arg-type]
        REV,
        dataclasses.replace(obs, drift=drift),
        memory or model.Memory(),
        now,
    )


def test_hold_keeps_a_drifted_stack_from_starting_a_rollout() -> None:
    d = decide(observed(), (SCALED, SUSPENDED), **HOLD)
    assert (d.phase, d.reason, d.update, d.effects, d.requeue) == (
        Phase.BLOCKED,
        Reason.DRIFTED,
        None,
        (),
        "idle",
    )
    assert "Asg1.desiredCapacity: expected 1, live 3" in d.message
    assert "MigrationAsg.suspendedProcesses: expected none, live Launch" in d.message


def test_hold_starts_once_the_drift_is_gone() -> None:
    d = decide(observed(), (), **HOLD)
    assert d.update is not None and d.update.kind == "migrate"


def test_hold_waits_for_a_first_judgement_of_the_drift() -> None:
    """The engine carries the last judgement into the rollout's first step, so None means
    none was made since the daemon started (or in a one-off `apply`): hold does not guess."""
    d = decide(observed(), None, **HOLD)
    assert (d.phase, d.reason, d.update, d.effects, d.requeue, d.needs) == (
        Phase.WAITING,
        Reason.READING,
        None,
        (),
        "idle",
        frozenset(),
    )
    assert "first judgement" in d.message


def test_report_does_not_wait_for_a_judgement() -> None:
    d = decide(observed(), None)
    assert d.update is not None and d.update.kind == "migrate"


def test_report_rolls_out_over_drift() -> None:
    d = decide(observed(), (SCALED,))
    assert d.update is not None and d.update.kind == "migrate"
    assert d == decide(observed(), None)


def test_hold_does_not_stop_a_rollout_under_way() -> None:
    """Phase 1 passed: the switch is sent whatever the groups look like (our own updates
    are what move them)."""
    memory = model.Memory(rollout=rollout(migrated_at=T0 - minutes(1)))
    obs = observed(stack(mig=NEW, mig_cap=1), record=record())
    d = decide(obs, (SCALED,), memory, **HOLD)
    assert d.update is not None and d.update.kind == "switch"


def test_hold_does_not_stop_a_stack_in_sync() -> None:
    d = decide(observed(stack(api=NEW)), (SCALED,), image=NEW, **HOLD)
    assert (d.phase, d.reason) == (Phase.IN_SYNC, Reason.IN_SYNC)


def test_a_retry_of_a_failed_rollout_is_a_new_start_and_is_held() -> None:
    failed = rollout(result="failed", finished_at=T0 - minutes(5))
    d = decide(observed(), (SCALED,), model.Memory(rollout=failed), **HOLD)
    assert (d.reason, d.update) == (Reason.DRIFTED, None)


def test_a_paused_stack_stays_paused_over_drift() -> None:
    d = decide(observed(), (SCALED,), paused={"reason": "freeze"}, **HOLD)
    assert d.reason == Reason.PAUSED_IN_SPEC


def test_a_fleet_member_waits_for_its_turn_before_its_drift_holds_it() -> None:
    """Held only in its turn: Blocked counts as failed in the fleet's budget, which a member
    whose step has not come must not spend."""
    obs = dataclasses.replace(observed(), turn=model.Turn("api", 2, False, "waits for step 1"))
    d = decide(obs, (SCALED,), **HOLD)
    assert d.reason == Reason.FLEET_TURN


# --- properties -------------------------------------------------------------------------

drifts = st.none() | st.lists(
    st.builds(
        Drift,
        resource=st.sampled_from(["Asg1", "MigrationAsg"]),
        field=st.sampled_from(["launchTemplate", "desiredCapacity", "suspendedProcesses"]),
        expected=st.sampled_from(["1", "lt-1 version 1", "none"]),
        live=st.sampled_from(["3", "lt-1 version 2", "Launch"]),
    ),
    max_size=3,
).map(tuple)


@settings(max_examples=500, deadline=None)
@given(obs=observations, memory=memories, image=st.sampled_from(IMAGES), drift=drifts)
def test_with_report_drift_never_changes_the_decision(
    obs: model.Observed, memory: model.Memory, image: str, drift: tuple[Drift, ...] | None
) -> None:
    dep = deployment(image, rollout={"onDrift": "report"})
    with_drift = planner.plan(dep, REV, dataclasses.replace(obs, drift=drift), memory, T0)
    assert with_drift == planner.plan(dep, REV, obs, memory, T0)


@settings(max_examples=500, deadline=None)
@given(obs=observations, memory=memories, image=st.sampled_from(IMAGES), drift=drifts)
def test_with_hold_a_drifted_stack_never_gets_a_phase_1_update(
    obs: model.Observed, memory: model.Memory, image: str, drift: tuple[Drift, ...] | None
) -> None:
    """A rollout toward the image already under way is not a start: it goes on."""
    d = planner.plan(
        deployment(image, rollout={"onDrift": "hold"}),
        REV,
        dataclasses.replace(obs, drift=drift),
        memory,
        T0,
    )
    r = memory.rollout
    if not drift or (r is not None and r.active and r.image == image):
        return
    assert obs.stack is not None
    mig = obs.stack.parameters["MigrationLcImageId"]
    starts_phase1 = d.update is not None and d.update.changes.get("MigrationLcImageId") == image
    assert not (starts_phase1 and mig != image), d.message
    if d.reason == Reason.DRIFTED:
        assert (d.phase, d.update, d.effects, d.scaling) == (Phase.BLOCKED, None, (), None)


@settings(max_examples=300, deadline=None)
@given(obs=observations, memory=memories, image=st.sampled_from(IMAGES))
def test_with_hold_a_stack_never_judged_never_gets_a_phase_1_update(
    obs: model.Observed, memory: model.Memory, image: str
) -> None:
    d = planner.plan(deployment(image, rollout={"onDrift": "hold"}), REV, obs, memory, T0)
    r = memory.rollout
    if r is not None and r.active and r.image == image:
        return
    assert obs.stack is not None and obs.drift is None
    mig = obs.stack.parameters["MigrationLcImageId"]
    starts_phase1 = d.update is not None and d.update.changes.get("MigrationLcImageId") == image
    assert not (starts_phase1 and mig != image), d.message
