"""Safety and liveness of the planner as properties over random stacks and histories.

A small simulated world stands in for CloudFormation and the migration instance: updates
take a few ticks, the migration group writes its record after it starts, and the planner's
effects are folded into memory exactly as the store folds them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler import model, planner, reasons
from reconciler.model import Phase
from reconciler.reasons import Reason
from tests.unit.plannerkit import REV, T0, deployment, healthy, params

IMAGES = ("ami-00000001", "ami-00000002", "ami-00000003")
TICK = dt.timedelta(seconds=10)
API, MIG, MIG_CAP = "LcImageId", "MigrationLcImageId", "MigrationDesiredCapacity"


@dataclasses.dataclass
class World:
    """CloudFormation plus one migration instance, as the daemon can see them."""

    params: dict[str, str]
    outcome: model.RecordStatus  # what the migration instance will report
    delay: int  # ticks an update stays in progress
    last_updated: dt.datetime = T0 - dt.timedelta(hours=1)
    status: str = "UPDATE_COMPLETE"
    in_flight: tuple[int, dict[str, str]] | None = None
    started: dict[str, dt.datetime] = dataclasses.field(default_factory=dict)
    records: dict[str, model.MigrationRecord] = dataclasses.field(default_factory=dict)
    migrated_ok: set[str] = dataclasses.field(default_factory=set)

    def __post_init__(self) -> None:
        if int(self.params[MIG_CAP]) >= 1:
            self.started[self.params[MIG]] = self.last_updated

    def observe(self, image: str) -> model.Observed:
        view = model.StackView(self.status, dict(self.params), self.last_updated)
        cap = int(self.params["Asg1DesiredCapacity"])
        return model.Observed(
            stack=view,
            api_desired_capacity=cap,
            api_instances=healthy(self.params[API], cap),
            migration_record=self.records.get(image),
        )

    def observe_shared(self, image: str) -> model.Observed:
        """As the fleet's shared listings show it: no events (so no last update time, as
        moto's DescribeStacks gives none) and no instance health."""
        full = self.observe(image)
        assert full.stack is not None
        view = dataclasses.replace(full.stack, last_updated=None)
        return dataclasses.replace(
            full, stack=view, api_desired_capacity=None, api_instances=None, partial=True
        )

    def send(self, update: model.StackUpdate, now: dt.datetime) -> None:
        assert self.in_flight is None, "an update was sent to a busy stack"
        self.in_flight = (self.delay, update.changes)
        self.status = "UPDATE_IN_PROGRESS"
        self.last_updated = now

    def tick(self, now: dt.datetime) -> None:
        if self.in_flight is not None:
            left, changes = self.in_flight
            if left > 0:
                self.in_flight = (left - 1, changes)
                return
            self._apply(changes, now)
        self._migrate(now)

    def _apply(self, changes: dict[str, str], now: dt.datetime) -> None:
        before = (self.params[MIG], int(self.params[MIG_CAP]))
        self.params.update(changes)
        self.in_flight, self.status = None, "UPDATE_COMPLETE"
        after = (self.params[MIG], int(self.params[MIG_CAP]))
        if after[1] >= 1 and (after[0] != before[0] or before[1] == 0):
            self.started[after[0]] = now  # a fresh migration instance boots

    def _migrate(self, now: dt.datetime) -> None:
        image = self.params[MIG]
        start = self.started.get(image)
        if start is None or int(self.params[MIG_CAP]) < 1:
            return
        old = self.records.get(image)
        if old is not None and old.updated_at >= start:
            return
        self.records[image] = model.MigrationRecord(image, self.outcome, now)
        if self.outcome == "succeeded":
            self.migrated_ok.add(image)


@dataclasses.dataclass
class Run:
    phases: list[Phase]
    updates: list[model.StackUpdate]
    world: World


def simulate(
    world: World, image: str, api: int | str, check: str, ticks: int = 400, shared: bool = False
) -> Run:
    migration = {"check": check, "location": "s3://deploy-status/p" if check != "none" else None}
    dep = deployment(image, capacity={"api": api}, migration=migration)
    memory, now = model.Memory(), T0
    phases: list[Phase] = []
    updates: list[model.StackUpdate] = []
    for _ in range(ticks):
        world.tick(now)
        seen = world.observe_shared(image) if shared else world.observe(image)
        decision = planner.plan(dep, REV, seen, memory, now)
        if decision.needs:  # as the engine does: never act on it, read more, plan again
            assert decision.update is None and not decision.effects and decision.scaling is None
            seen = world.observe(image)
            decision = planner.plan(dep, REV, seen, memory, now)
        if any(
            isinstance(e, model.FinishRollout) and e.result == "succeeded" for e in decision.effects
        ):
            assert seen.api_instances is not None, "verified without reading the instances"
        for effect in decision.effects:
            memory = planner.apply_effect(memory, effect)
        phases.append(decision.phase)
        if decision.update is not None:
            check_update(world, decision.update, image, check)
            updates.append(decision.update)
            world.send(decision.update, now)
        if decision.phase == Phase.IN_SYNC and world.in_flight is None:
            break
        now += TICK
    return Run(phases, updates, world)


def check_update(world: World, update: model.StackUpdate, image: str, check: str) -> None:
    """The safety rules every single update must obey."""
    assert {n for n, _ in update.parameters} == set(world.params), "not every parameter sent"
    assert world.status == "UPDATE_COMPLETE", "update sent to a busy stack"
    target = update.changes.get(API)
    if target is not None and target != world.params[API] and check != "none":
        assert target in world.migrated_ok, f"API switched to {target} before its migration"
        started = world.started[target]
        assert world.records[target].updated_at >= started


worlds = st.builds(
    lambda api, mig, mig_cap, api_cap, env, outcome, delay: World(
        params(api=api, mig=mig, mig_cap=mig_cap, api_cap=api_cap, env=env), outcome, delay
    ),
    api=st.sampled_from(IMAGES),
    mig=st.sampled_from(IMAGES),
    mig_cap=st.integers(0, 2),
    api_cap=st.integers(0, 3),
    env=st.sampled_from(["prod", "staging"]),
    outcome=st.just("succeeded"),
    delay=st.integers(0, 3),
)


@settings(max_examples=300, deadline=None)
@given(
    world=worlds,
    image=st.sampled_from(IMAGES),
    api=st.sampled_from([1, 2, "live"]),
    check=st.sampled_from(["s3", "none"]),
    shared=st.booleans(),
)
def test_from_any_state_the_decisions_converge_within_three_updates(
    world: World, image: str, api: int | str, check: str, shared: bool
) -> None:
    """Whether each step sees the stack alone or the fleet's shared (partial) reads."""
    run = simulate(world, image, api, check, shared=shared)
    assert run.phases[-1] == Phase.IN_SYNC, run.phases[-5:]
    assert len(run.updates) <= 3, [u.changes for u in run.updates]
    assert world.params[API] == image and world.params[MIG_CAP] == "0"


@settings(max_examples=200, deadline=None)
@given(
    world=worlds,
    image=st.sampled_from(IMAGES),
    outcome=st.sampled_from(["failed", "running"]),
    shared=st.booleans(),
)
def test_the_api_image_never_moves_to_an_image_whose_migration_did_not_succeed(
    world: World, image: str, outcome: model.RecordStatus, shared: bool
) -> None:
    world.outcome = outcome
    before = world.params[API]
    run = simulate(world, image, 1, "s3", ticks=600, shared=shared)
    assert world.params[API] == before or image == before
    if image != before:
        assert Phase.FAILED in run.phases


# --- single decisions over arbitrary observations ------------------------------------

statuses = st.sampled_from(
    [
        *sorted(planner.STABLE | planner.NEEDS_PERSON),
        "UPDATE_IN_PROGRESS",
        "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
        "UPDATE_ROLLBACK_IN_PROGRESS",
    ]
)
times = st.integers(-120, 120).map(lambda m: T0 + dt.timedelta(minutes=m))
records = st.none() | st.builds(
    model.MigrationRecord,
    image=st.sampled_from(IMAGES),
    status=st.sampled_from(["running", "succeeded", "failed"]),
    updated_at=times,
)
rollouts = st.none() | st.builds(
    model.RolloutMemory,
    id=st.just(1),
    image=st.sampled_from(IMAGES),
    revision=st.just(REV),
    from_image=st.sampled_from(IMAGES),
    started_at=times,
    phase1_started_at=st.none() | times,
    migrated_at=st.none() | times,
    switched_at=st.none() | times,
    result=st.sampled_from([None, "failed", "succeeded"]),
)
observations = st.builds(
    lambda status, p, rec, cap, partial: model.Observed(
        model.StackView(status, p, None if partial else T0 - dt.timedelta(minutes=30)),
        cap,
        None if partial else healthy(p[API], cap),
        rec,
        partial=partial,
    ),
    status=statuses,
    p=st.builds(
        params,
        api=st.sampled_from(IMAGES),
        mig=st.sampled_from(IMAGES),
        mig_cap=st.integers(0, 2),
        api_cap=st.integers(0, 3),
    ),
    rec=records,
    cap=st.integers(0, 3),
    partial=st.booleans(),  # a step served by the fleet's shared reads
)
memories = st.builds(
    model.Memory, rollout=rollouts, approved_image=st.none() | st.sampled_from(IMAGES)
)


@settings(max_examples=500, deadline=None)
@given(obs=observations, memory=memories, image=st.sampled_from(IMAGES))
def test_every_update_carries_every_parameter_and_only_stable_stacks_get_one(
    obs: model.Observed, memory: model.Memory, image: str
) -> None:
    d = planner.plan(deployment(image), REV, obs, memory, T0)
    assert obs.stack is not None
    if d.update is not None:
        assert obs.stack.status in planner.STABLE
        assert [n for n, _ in d.update.parameters] == sorted(obs.stack.parameters)


@settings(max_examples=300, deadline=None)
@given(obs=observations, memory=memories, image=st.sampled_from(IMAGES))
def test_a_paused_spec_never_updates(obs: model.Observed, memory: model.Memory, image: str) -> None:
    d = planner.plan(deployment(image, paused={"reason": "freeze"}), REV, obs, memory, T0)
    assert d.update is None and d.phase in (Phase.PAUSED, Phase.BLOCKED)


@settings(max_examples=300, deadline=None)
@given(obs=observations, memory=memories, image=st.sampled_from(IMAGES))
def test_a_decision_depends_only_on_its_inputs(
    obs: model.Observed, memory: model.Memory, image: str
) -> None:
    dep = deployment(image)
    assert planner.plan(dep, REV, obs, memory, T0) == planner.plan(dep, REV, obs, memory, T0)


@settings(max_examples=500, deadline=None)
@given(obs=observations, memory=memories, image=st.sampled_from(IMAGES))
def test_a_single_decision_switches_the_api_only_after_a_valid_success(
    obs: model.Observed, memory: model.Memory, image: str
) -> None:
    d = planner.plan(deployment(image), REV, obs, memory, T0)
    assert obs.stack is not None
    target = d.update.changes.get(API) if d.update is not None else None
    if target is None or target == obs.stack.parameters[API]:
        return
    r = memory.rollout
    remembered = r is not None and r.image == target and r.migrated_at is not None
    rec = obs.migration_record
    observed_ok = rec is not None and rec.image == target and rec.status == "succeeded"
    assert remembered or observed_ok


@settings(max_examples=500, deadline=None)
@given(obs=observations, memory=memories, image=st.sampled_from(IMAGES))
def test_a_decision_that_needs_more_reading_acts_on_nothing(
    obs: model.Observed, memory: model.Memory, image: str
) -> None:
    """What a partial observation cannot decide is asked for, never guessed: no update,
    no effect to store, no scaling change; and a full observation never needs more."""
    d = planner.plan(deployment(image), REV, obs, memory, T0)
    if d.needs:
        assert obs.partial
        assert (d.update, d.effects, d.scaling) == (None, (), None)


# The phases each reason code may come with, written out (not taken from the planner):
# transitions tell "blocked", "paused" and "awaiting_approval" by code, which holds only
# while these agree with the phases a person sees.
PHASES_OF: dict[Reason, frozenset[Phase]] = {
    **dict.fromkeys(
        [
            Reason.MISSING_STACK,
            Reason.STACK_BROKEN,
            Reason.UNKNOWN_STACK_STATUS,
            Reason.BAD_PARAMETER_NAMES,
            Reason.RESOURCE_PROBLEM,
            Reason.MISSING_ALARM,
        ],
        frozenset({Phase.BLOCKED}),
    ),
    Reason.PAUSED_IN_SPEC: frozenset({Phase.PAUSED}),
    Reason.PAUSED_BY_OPERATOR: frozenset({Phase.PAUSED}),
    Reason.AWAITING_APPROVAL: frozenset({Phase.AWAITING_APPROVAL}),
    Reason.IN_SYNC: frozenset({Phase.IN_SYNC}),
    Reason.ROLLOUT_SUCCEEDED: frozenset({Phase.IN_SYNC}),
    Reason.BACKING_OFF: frozenset({Phase.FAILED}),
    **dict.fromkeys(reasons.FAILURES, frozenset({Phase.FAILED})),
    Reason.ROLLBACK_UNSAFE: frozenset({Phase.BLOCKED}),
    Reason.CHANGE_REFUSED: frozenset({Phase.BLOCKED}),
    Reason.DRIFTED: frozenset({Phase.BLOCKED}),
    Reason.MIGRATING: frozenset({Phase.MIGRATING}),
    Reason.AWAITING_MIGRATION: frozenset({Phase.MIGRATING}),
    Reason.SWITCHING: frozenset({Phase.UPDATING_API}),
    Reason.SUSPENDING_SCALING: frozenset({Phase.UPDATING_API}),
    Reason.APPLYING_PARAMETERS: frozenset({Phase.UPDATING_API}),
    Reason.VERIFYING: frozenset({Phase.VERIFYING}),
    Reason.BAKING_ALARMS: frozenset({Phase.VERIFYING}),
    Reason.UPDATE_IN_PROGRESS: frozenset({Phase.MIGRATING, Phase.UPDATING_API}),
    Reason.READING: frozenset({Phase.WAITING, Phase.MIGRATING, Phase.VERIFYING}),
    **dict.fromkeys(
        [
            Reason.BUSY_FOREIGN,
            Reason.UPDATE_DEFERRED,
            Reason.AWAITING_UPSTREAM,
            Reason.BAKING,
            Reason.OUTSIDE_WINDOW,
            Reason.FLEET_TURN,
            Reason.FLEET_HALTED,
            Reason.ALARM_HOLDING,
            Reason.CHECKING_CHANGES,
        ],
        frozenset({Phase.WAITING}),
    ),
}


def test_every_reason_code_has_its_phases() -> None:
    assert set(PHASES_OF) == set(Reason)


@settings(max_examples=500, deadline=None)
@given(obs=observations, memory=memories, image=st.sampled_from(IMAGES))
def test_a_decisions_reason_code_agrees_with_its_phase(
    obs: model.Observed, memory: model.Memory, image: str
) -> None:
    d = planner.plan(deployment(image), REV, obs, memory, T0)
    assert d.phase in PHASES_OF[d.reason]
    for effect in d.effects:
        if isinstance(effect, model.RecordFailure):
            assert effect.failure.code == d.reason
