"""Waves (reconciler.waves): whose turn it is in a fleet, as examples and as a property
over random fleets, failures and timings."""

from __future__ import annotations

import dataclasses
import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler import model, spec, waves
from reconciler.reasons import Reason

T0 = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
IMAGE = "ami-00000002"


def fleet(**over: object) -> spec.FleetSpec:
    body: dict[str, object] = {
        "selector": {"matchLabels": {"app": "api"}},
        "steps": [
            {"matchLabels": {"tier": "canary"}, "maxConcurrent": 1},
            {"maxConcurrent": "50%"},
        ],
        **over,
    }
    return spec.FleetSpec.model_validate(body)


def started(at: dt.datetime = T0) -> model.RolloutMemory:
    return model.RolloutMemory(1, IMAGE, "r", "ami-00000001", at)


def finished(at: dt.datetime, result: model.RolloutResult = "succeeded") -> model.RolloutMemory:
    return dataclasses.replace(started(at), finished_at=at, result=result)


def failure(at: dt.datetime = T0) -> model.Failure:
    return model.Failure(1, "bad", at, at, "r", IMAGE, Reason.UNHEALTHY)


def member(name: str, step: int, state: str = "out", at: dt.datetime = T0) -> waves.Member:
    memory = {
        "out": model.Memory(),
        "flight": model.Memory(rollout=started(at)),
        "sync": model.Memory(rollout=finished(at)),
        "failed": model.Memory(rollout=finished(at, "failed"), failure=failure(at)),
    }[state]
    return waves.Member(name, step, IMAGE, memory, in_sync=state == "sync")


FREE = model.FleetMemory()


def turn(members: list[waves.Member], who: str, **kw: object) -> model.Turn:
    memory = kw.pop("memory", FREE)
    now = kw.pop("now", T0)
    fs = fleet(**kw)
    return waves.turn("api", fs, members, memory, who, now)  # type: ignore[arg-type]


def test_the_canary_goes_first_and_the_rest_wait_naming_fleet_and_step() -> None:
    members = [member("canary", 0), member("a", 1), member("b", 1)]
    assert turn(members, "canary").go
    waiting = turn(members, "a")
    assert not waiting.go and waiting.step == 2
    assert (
        waiting.message.startswith("fleet api step 2 waits for step 1")
        and "canary" in waiting.message
    )


def test_a_step_starts_once_the_one_before_is_in_sync_and_respects_its_limit() -> None:
    members = [
        member("canary", 0, "sync"),
        member("a", 1),
        member("b", 1),
        member("c", 1),
        member("d", 1),
    ]
    assert turn(members, "a").go and turn(members, "a").limit == 2  # 50% of 4
    members[1] = member("a", 1, "flight")
    members[2] = member("b", 1, "flight")
    held = turn(members, "c")
    assert not held.go and "2 of at most 2 under way" in held.message


def test_the_fleets_bake_spaces_the_steps() -> None:
    members = [member("canary", 0, "sync", at=T0), member("a", 1)]
    early = turn(members, "a", bake="10m", now=T0 + dt.timedelta(minutes=9))
    assert not early.go and "bake" in early.message
    assert turn(members, "a", bake="10m", now=T0 + dt.timedelta(minutes=10)).go


def test_a_failure_within_the_budget_counts_as_finished() -> None:
    members = [member("canary", 0, "failed"), member("a", 1)]
    assert turn(members, "a", failureBudget=1).go
    fs = fleet(failureBudget=1)
    assert waves.over_budget("api", fs, members, FREE) is None


def test_one_failure_more_than_the_budget_halts_and_a_halt_holds_everyone_not_started() -> None:
    members = [member("canary", 0, "failed"), member("a", 1)]
    reason = waves.over_budget("api", fleet(), members, FREE)
    assert reason is not None and "canary" in reason and "failureBudget 0" in reason
    halt = model.Halt(reason, T0, "budget", waves.signature(members))
    held = turn(members, "a", memory=model.FleetMemory(halt=halt))
    assert not held.go and held.halted and held.message.startswith("fleet api halted:")


def test_failures_before_the_last_lift_do_not_count() -> None:
    members = [member("canary", 0, "failed", at=T0), member("a", 1)]
    lifted = model.FleetMemory(epoch=T0 + dt.timedelta(seconds=1))
    assert waves.over_budget("api", fleet(), members, lifted) is None


def test_a_budget_halt_lifts_on_a_new_image_and_a_persons_halt_does_not() -> None:
    members = [member("canary", 0, "failed"), member("a", 1)]
    budget = model.FleetMemory(halt=model.Halt("x", T0, "budget", waves.signature(members)))
    assert not waves.lifts(budget, members)
    bumped = [*members[:1], dataclasses.replace(members[1], image="ami-00000003")]
    assert waves.lifts(budget, bumped)
    person = model.FleetMemory(halt=model.Halt("x", T0, "operator"))
    assert not waves.lifts(person, bumped)


def test_a_paused_member_is_skipped_by_the_waves() -> None:
    members = [dataclasses.replace(member("canary", 0), paused=True), member("a", 1)]
    assert turn(members, "a").go


def test_percentages_round_down_but_never_below_one() -> None:
    step = spec.FleetStep.model_validate({"maxConcurrent": "25%"})
    assert [step.limit(n) for n in (1, 3, 4, 9, 100)] == [1, 1, 1, 2, 25]


def test_members_matching_no_step_form_a_last_step_of_one_at_a_time() -> None:
    fs = fleet(steps=[{"matchLabels": {"tier": "canary"}}])
    assert fs.step_of({"app": "api", "tier": "canary"}) == 0
    assert fs.step_of({"app": "api"}) == 1
    assert fs.step(1).limit(10) == 1


# --- the property ------------------------------------------------------------------------

Action = tuple[str, int, bool]  # (kind, member index, outcome)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[spec.FleetSpec, list[int], list[Action]]:
    n_steps = draw(st.integers(1, 3))
    steps = [
        {"matchLabels": {"s": str(i)}, "maxConcurrent": draw(st.sampled_from([1, 2, "50%", "34%"]))}
        for i in range(n_steps)
    ]
    fs = spec.FleetSpec.model_validate(
        {
            "selector": {"matchLabels": {"app": "api"}},
            "steps": steps,
            "bake": draw(st.sampled_from([None, "1m", "5m"])),
            "failureBudget": draw(st.integers(0, 2)),
        }
    )
    placement = draw(st.lists(st.integers(0, n_steps), min_size=1, max_size=9))
    actions = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["start", "start", "finish", "tick", "lift", "bump"]),
                st.integers(0, len(placement) - 1),
                st.booleans(),
            ),
            max_size=60,
        )
    )
    return fs, placement, actions


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_no_reachable_state_breaks_the_limits(
    scenario: tuple[spec.FleetSpec, list[int], list[Action]],
) -> None:
    """Members start only in their turn (judged by waves), with the slot counted as the store
    counts it; whatever the order of starts, failures, lifts, bumps and time, no step ever has
    more than its limit under way, no step starts before the ones before it are done and
    baked, and a halted fleet starts nobody."""
    fs, placement, actions = scenario
    now = T0
    members = [
        waves.Member(f"m{i}", step, IMAGE, model.Memory(), in_sync=False)
        for i, step in enumerate(placement)
    ]
    memory = model.FleetMemory()
    limits = {s.index: s.limit for s in waves.steps(fs, members)}
    for kind, index, good in actions:
        me = members[index]
        if kind == "tick":
            now += dt.timedelta(minutes=2)
        elif kind == "lift":
            memory = model.FleetMemory(epoch=now)
        elif kind == "bump":  # a commit changes this member's image
            image = f"ami-{int(me.image[4:], 16) + 1:08x}"
            members[index] = dataclasses.replace(me, image=image, in_sync=False)
        elif kind == "finish" and me.in_flight:
            r = dataclasses.replace(
                me.memory.rollout, result="succeeded" if good else "failed", finished_at=now
            )  # type: ignore[arg-type]
            fail = None if good else dataclasses.replace(failure(now), image=me.image)
            members[index] = dataclasses.replace(
                me, memory=model.Memory(rollout=r, failure=fail), in_sync=good
            )
        elif kind == "start" and not me.in_flight and not me.in_sync:
            t = waves.turn("f", fs, members, memory, me.name, now)
            busy = sum(1 for m in members if m.step == me.step and m.in_flight)
            if t.go and memory.halt is None and busy < t.limit:  # the store's claim
                for earlier in members:
                    if earlier.step < me.step:
                        assert earlier.done(memory.epoch), (earlier, me)
                        end = earlier.finished_at()
                        if fs.bake is not None and end is not None:
                            assert now >= end + fs.bake
                rollout = dataclasses.replace(started(now), image=me.image)
                members[index] = dataclasses.replace(
                    me, memory=model.Memory(rollout=rollout, failure=me.memory.failure)
                )
        # the engine judges the halt on every turn
        if waves.lifts(memory, members):
            memory = model.FleetMemory(epoch=now)
        reason = waves.over_budget("f", fs, members, memory)
        if reason is not None:
            memory = dataclasses.replace(
                memory, halt=model.Halt(reason, now, "budget", waves.signature(members))
            )
        for step, limit in limits.items():
            assert sum(1 for m in members if m.step == step and m.in_flight) <= limit
        if memory.halt is not None:
            for m in members:
                if not m.in_flight and not m.in_sync:
                    assert not waves.turn("f", fs, members, memory, m.name, now).go
