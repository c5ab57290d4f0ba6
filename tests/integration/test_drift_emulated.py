"""Drift of the managed groups on the embedded emulator (the `world` of
tests/integration/emulated.py): groups changed by hand with boto3 outside CloudFormation,
and the requests the emulator served counted."""

from __future__ import annotations

import datetime as dt

from reconciler import engine, model, spec
from reconciler.aws.fleet import Fleet
from reconciler.metrics import Metrics
from reconciler.model import Drift, Phase
from reconciler.reasons import Reason
from tests.integration.emulated import INTERVAL, World, make_stacks


def settle(world: World) -> None:
    """Two passes: the first look records each stack settled, the next judges it."""
    world.step_all()
    world.passes(1)
    for name in world.specs:
        assert world.drift(name) == [], name


def test_groups_changed_by_hand_show_as_drift_once_told_and_cleared_by_our_update(
    world: World,
) -> None:
    make_stacks(world, "Fixed", "Live", "Held", "Idle")
    world.add("Fixed")
    world.add("Live", capacity={"api": "live", "migration": 1})
    world.add("Held")
    world.add("Idle")
    settle(world)
    asg = world.emulator.client("autoscaling")

    asg.set_desired_capacity(AutoScalingGroupName=world.group("Fixed"), DesiredCapacity=3)
    asg.set_desired_capacity(AutoScalingGroupName=world.group("Live"), DesiredCapacity=3)
    asg.suspend_processes(
        AutoScalingGroupName=world.group("Held", "MigrationAsg"), ScalingProcesses=["Launch"]
    )
    world.passes(1)  # within one interval

    assert world.drift("Fixed") == [
        {"resource": "Asg1", "field": "desiredCapacity", "expected": "1", "live": "3"}
    ]
    assert world.drift("Live") == []  # capacity.api: live leaves the capacity to others
    assert world.drift("Held") == [
        {
            "resource": "MigrationAsg",
            "field": "suspendedProcesses",
            "expected": "none",
            "live": "Launch",
        }
    ]
    assert [world.drifted_metric(n) for n in ("Fixed", "Live", "Held", "Idle")] == [1, 0, 1, 0]
    status = world.eng.status("fixed")
    assert status is not None and status.phase == Phase.IN_SYNC  # report: nothing held

    world.passes(2)  # the same drift, judged again, is not told again
    drifted = [t for t in world.told if t.kind == "drifted"]
    assert sorted(t.name for t in drifted) == ["fixed", "held"]
    assert len(world.outbox("drifted")) == 2

    # The daemon's own update (a rollout of Fixed) overwrites the group; its drift is not
    # judged while the rollout runs, and is gone once the stack settles after it.
    world.add("Fixed", image=world.new)
    world.eng.step(world.specs["Fixed"])
    status = world.eng.status("fixed")
    assert status is not None and status.phase == Phase.MIGRATING
    assert world.drift("Fixed") == [  # not judged while it rolls out: the last word stays
        {"resource": "Asg1", "field": "desiredCapacity", "expected": "1", "live": "3"}
    ]
    converge(world, "Fixed")
    world.passes(2)
    assert world.drift("Fixed") == []
    assert world.drifted_metric("Fixed") == 0
    assert len([t for t in world.told if t.kind == "drifted"]) == 2


def converge(world: World, stack: str) -> None:
    """Step the spec (the clock a tick on each time) until its rollout ends in sync."""
    loaded = world.specs[stack]
    for _ in range(200):
        world.clock.advance(dt.timedelta(seconds=1))
        result = world.eng.step(loaded)
        assert result.error is None, result.error
        status = world.eng.status(stack.lower())
        assert status is not None
        rollout = status.memory.rollout
        if result.phase == Phase.IN_SYNC and rollout is not None and not rollout.active:
            return
        world.emulator.wait_settled(stack)
    raise AssertionError(f"{stack} did not converge: {result.message}")


def test_a_launch_template_version_changed_by_hand_is_drift_against_the_stacks(
    world: World,
) -> None:
    make_stacks(world, *(f"Lt{i}" for i in range(4)))
    for i in range(4):
        world.add(f"Lt{i}")
    settle(world)
    template, made = world.new_launch_template_version("Lt0")
    world.passes(1)
    lt = template["LaunchTemplateId"]
    assert world.drift("Lt0") == [
        {
            "resource": "Asg1",
            "field": "launchTemplate",
            "expected": f"{lt} version {template['Version']}",
            "live": f"{lt} version {made}",
        }
    ]
    assert [world.drift(f"Lt{i}") for i in (1, 2, 3)] == [[], [], []]


def test_steady_state_drift_adds_only_the_shared_groups_listing(world: World) -> None:
    """Per interval, with every stack idle and in sync: one DescribeStacks page and one
    DescribeAutoScalingGroups page for the account, and nothing per stack."""
    names = [f"Quiet{i}" for i in range(5)]
    make_stacks(world, *names)
    for name in names:
        world.add(name)
    settle(world)
    before = world.emulator.requests()

    world.passes(3)

    after = world.emulator.requests()
    spent = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert spent == {
        ("cloudformation", "DescribeStacks"): 3,
        ("autoscaling", "DescribeAutoScalingGroups"): 3,
    }
    assert all(world.drift(n) == [] for n in names)


def test_hold_keeps_a_drifted_stack_from_rolling_out_until_the_drift_is_gone(
    world: World,
) -> None:
    make_stacks(world, *(f"Hold{i}" for i in range(4)))
    for i in range(4):
        world.add(f"Hold{i}", rollout={"verifyHealth": False, "onDrift": "hold"})
    settle(world)
    asg = world.emulator.client("autoscaling")
    group = world.group("Hold0")
    asg.suspend_processes(AutoScalingGroupName=group, ScalingProcesses=["AZRebalance"])
    world.passes(1)
    updates = world.emulator.requests().get(("cloudformation", "UpdateStack"), 0)

    world.add("Hold0", image=world.new, rollout={"verifyHealth": False, "onDrift": "hold"})
    result = world.eng.step(world.specs["Hold0"])

    status = world.eng.status("hold0")
    assert status is not None
    assert (result.phase, status.reason) == (Phase.BLOCKED, Reason.DRIFTED)
    assert "Asg1.suspendedProcesses: expected none, live AZRebalance" in result.message
    assert world.emulator.requests().get(("cloudformation", "UpdateStack"), 0) == updates
    assert [t.kind for t in world.told if t.name == "hold0"] == ["drifted", "blocked"]

    # Fixed by hand; `retry` steps it again at once (a tick later, not an interval).
    asg.resume_processes(AutoScalingGroupName=group, ScalingProcesses=["AZRebalance"])
    world.clock.advance(dt.timedelta(seconds=2))
    result = world.eng.step(world.specs["Hold0"])
    assert result.phase == Phase.MIGRATING, result.message
    assert world.emulator.requests()[("cloudformation", "UpdateStack")] == updates + 1
    assert world.drift("Hold0") == []


def test_a_stack_read_alone_is_judged_from_the_groups_listing_too(world: World) -> None:
    """Fewer than 4 stacks in the account: no stack listing serves them, each is read by
    itself, and the groups listing still judges its drift."""
    make_stacks(world, "Alone")
    world.add("Alone")
    settle(world)
    asg = world.emulator.client("autoscaling")
    asg.set_desired_capacity(AutoScalingGroupName=world.group("Alone"), DesiredCapacity=2)
    world.passes(1)
    assert world.drift("Alone") == [
        {"resource": "Asg1", "field": "desiredCapacity", "expected": "1", "live": "2"}
    ]
    assert Drift("Asg1", "desiredCapacity", "1", "2").describe() in world.told[-1].message


def test_a_groups_listing_from_before_an_update_never_becomes_the_baseline(
    world: World,
) -> None:
    """Someone updates the stack (the migration group is replaced on a new launch template
    version) between a groups listing and the next listing of the stacks: that groups
    listing shows the stack as it was, so it judges nothing under the new update, and the
    next one records the new version as CloudFormation's."""
    fleet, sp = updating(world)
    world.clock.advance(INTERVAL)
    fleet.prefetch_groups(sp, INTERVAL)  # the groups, as they are before the update

    someone_updates(world, "Upd0")
    # The stacks listed again (by another spec's step, say), the groups not yet.
    listed = fleet.listed_at(sp, dt.timedelta(0), len(world.specs))
    assert listed is not None
    view, seen = listed
    assert fleet.judge_drift(sp, view, seen, model.Memory(), INTERVAL) is None

    world.passes(1)
    assert world.drift("Upd0") == []


def test_a_groups_listing_newer_than_the_look_at_the_stack_judges_nothing(
    world: World,
) -> None:
    """The other way round: the stack looked settled, then someone updated it, then the
    groups were listed. That listing shows the new update's groups against the stack as
    it was before; it judges nothing, and no false drift is told."""
    fleet, sp = updating(world)
    world.clock.advance(INTERVAL)
    listed = fleet.listed_at(sp, dt.timedelta(0), len(world.specs))
    assert listed is not None
    view, seen = listed

    someone_updates(world, "Upd0")
    fleet.prefetch_groups(sp, dt.timedelta(0))
    assert fleet.judge_drift(sp, view, seen, model.Memory(), INTERVAL) is None

    world.passes(1)
    assert world.drift("Upd0") == []
    assert not [t for t in world.told if t.kind == "drifted"]


def updating(world: World) -> tuple[Fleet, spec.Spec]:
    """Four settled stacks, judged clean; the fleet and the first one's spec."""
    make_stacks(world, *(f"Upd{i}" for i in range(4)))
    for i in range(4):
        world.add(f"Upd{i}")
    settle(world)
    return world.eng.fleet, world.specs["Upd0"].deployment.spec


def someone_updates(world: World, stack: str) -> None:
    """An update not the daemon's: a new migration image, so CloudFormation replaces the
    migration group on a new launch template version."""
    parameters = world.emulator.live_parameters(stack)
    world.emulator.client("cloudformation").update_stack(
        StackName=stack,
        UsePreviousTemplate=True,
        Parameters=[
            {"ParameterKey": k, "ParameterValue": world.new}
            if k == "MigrationLcImageId"
            else {"ParameterKey": k, "UsePreviousValue": True}
            for k in parameters
        ],
    )
    assert world.emulator.wait_settled(stack) == "UPDATE_COMPLETE"


def test_a_listing_newer_than_its_look_is_judged_at_the_next_look(world: World) -> None:
    """Other specs' steps read the stacks and then the groups every tick (a rollout next
    door): each groups listing is newer than the look at the stack it came with, and is
    judged when the next look, begun after it, shows the stack still settled."""
    fleet, sp = updating(world)
    world.emulator.client("autoscaling").set_desired_capacity(
        AutoScalingGroupName=world.group("Upd0"), DesiredCapacity=2
    )
    looks = []
    for _ in range(2):
        world.clock.advance(dt.timedelta(seconds=2))
        listed = fleet.listed_at(sp, dt.timedelta(0), len(world.specs))
        fleet.prefetch_groups(sp, dt.timedelta(0))
        assert listed is not None
        looks.append(fleet.judge_drift(sp, *listed, model.Memory(), INTERVAL))
    assert looks == [None, (Drift("Asg1", "desiredCapacity", "1", "2"),)]


def test_plan_judges_capacity_and_processes_in_one_look_never_launch_templates(
    world: World,
) -> None:
    """`reconciler plan` is a process of its own: a fresh engine with no earlier look at
    the stack. It shows what the stack's parameters say against the groups; a launch
    template changed by hand is its first look's baseline (decision 0014)."""
    make_stacks(world, "Planned")
    world.add("Planned")
    asg = world.emulator.client("autoscaling")
    asg.set_desired_capacity(AutoScalingGroupName=world.group("Planned"), DesiredCapacity=2)
    world.new_launch_template_version("Planned")
    planner_engine = engine.Engine(world.eng.clients, world.store, Metrics())

    observed, decision = planner_engine.preview(world.specs["Planned"])

    assert observed.drift == (Drift("Asg1", "desiredCapacity", "1", "2"),)
    assert decision.update is None and decision.phase == Phase.IN_SYNC
