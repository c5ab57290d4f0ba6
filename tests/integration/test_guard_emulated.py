"""The change-set guard on the embedded emulator, whose change sets say what CloudFormation's
would: an Engine rolls out stacks made from the shipped template (the guard passes, and a
fleet sharing the template pays one change set per phase, the next bump none) and from a
template whose image parameter also feeds a lone EC2 instance (the switch is refused by
name, nothing is sent, no change set is left)."""

from __future__ import annotations

import json
from typing import Any

from reconciler.embedded.emulator import template_body
from reconciler.model import Phase
from reconciler.reasons import Reason
from tests.integration.emulated import World, make_stacks

STACKS = ("GuardA", "GuardB", "GuardC")
CREATE = ("cloudformation", "CreateChangeSet")
MAX_PASSES = 40


def with_box() -> str:
    """The shipped template plus an instance that runs the API image: an AMI bump replaces it."""
    body: dict[str, Any] = json.loads(template_body())
    body["Resources"]["Box"] = {
        "Type": "AWS::EC2::Instance",
        "Properties": {"ImageId": {"Ref": "LcImageId"}, "InstanceType": "t3.micro"},
    }
    return json.dumps(body)


def drive(world: World, until: Any) -> None:
    """Passes of steps, each after the stacks settled, until `until()` holds."""
    for _ in range(MAX_PASSES):
        for name in world.specs:
            world.emulator.wait_settled(name)
        world.passes(1)
        if until():
            return
    raise AssertionError(f"not done in {MAX_PASSES} passes: {statuses(world)}")


def statuses(world: World) -> dict[str, tuple[str, str]]:
    out = {}
    for name in world.specs:
        status = world.eng.status(name.lower())
        assert status is not None
        out[name] = (str(status.phase), status.message)
    return out


def in_sync(world: World, image: str) -> bool:
    return all(
        phase == str(Phase.IN_SYNC) and world.emulator.live_parameters(name)["LcImageId"] == image
        for name, (phase, _) in statuses(world).items()
    )


def change_sets_made(world: World) -> int:
    return world.emulator.requests().get(CREATE, 0)


def test_a_fleet_on_the_shipped_template_pays_one_change_set_per_phase_and_the_next_bump_none(
    world: World,
) -> None:
    make_stacks(world, *STACKS)
    for name in STACKS:
        world.add(name)
    drive(world, lambda: in_sync(world, world.old))  # idle: each template read once
    before = change_sets_made(world)

    for name in STACKS:
        world.add(name, image=world.new)
    drive(world, lambda: in_sync(world, world.new))
    assert change_sets_made(world) - before == 2  # phase 1 and the switch, for all three
    assert all(world.emulator.change_sets(name) == [] for name in STACKS)

    third = world.emulator.register_image("guard-third")
    for name in STACKS:
        world.add(name, image=third)
    drive(world, lambda: in_sync(world, third))
    assert change_sets_made(world) - before == 2  # the same template: every verdict known


def test_an_image_parameter_that_also_feeds_an_instance_is_refused_naming_it(
    world: World,
) -> None:
    world.emulator.create_stack(
        "Boxed",
        {"EnvName": "boxed", "LcImageId": world.old, "MigrationLcImageId": world.old},
        template=with_box(),
    )
    world.add("Boxed", image=world.new)

    def blocked() -> bool:
        status = world.eng.status("boxed")
        return status is not None and status.phase == Phase.BLOCKED

    drive(world, blocked)
    status = world.eng.status("boxed")
    assert status is not None and status.reason == Reason.CHANGE_REFUSED
    assert "Box (AWS::EC2::Instance): Modify, replacement True" in status.message
    assert "allowReplace" in status.message
    live = world.emulator.live_parameters("Boxed")
    assert live["LcImageId"] == world.old  # the switch was never sent
    assert world.emulator.change_sets("Boxed") == []
    # Phase 1 (the migration image feeds no instance) passed; the group it started stops.
    drive(world, lambda: world.emulator.live_parameters("Boxed")["MigrationDesiredCapacity"] == "0")
    made = change_sets_made(world)
    drive(world, blocked)  # held: nothing more is tried, nor another change set made
    world.passes(2)
    assert blocked() and world.emulator.live_parameters("Boxed")["LcImageId"] == world.old
    assert change_sets_made(world) == made


def test_allow_replace_lets_the_instance_be_replaced(world: World) -> None:
    world.emulator.create_stack(
        "Boxed",
        {"EnvName": "boxed", "LcImageId": world.old, "MigrationLcImageId": world.old},
        template=with_box(),
    )
    world.add("Boxed", image=world.new, rollout={"verifyHealth": False, "allowReplace": ["Box"]})
    drive(world, lambda: in_sync(world, world.new))
    assert world.emulator.change_sets("Boxed") == []


def test_guard_off_sends_without_a_change_set(world: World) -> None:
    world.emulator.create_stack(
        "Boxed",
        {"EnvName": "boxed", "LcImageId": world.old, "MigrationLcImageId": world.old},
        template=with_box(),
    )
    world.add("Boxed", image=world.new, rollout={"verifyHealth": False, "guard": "off"})
    drive(world, lambda: in_sync(world, world.new))
    assert change_sets_made(world) == 0


def test_plan_knows_no_verdict_until_a_change_set_is_asked_for_and_then_keeps_it(
    world: World,
) -> None:
    """`plan` (Engine.preview, Engine.verdict) creates nothing; `plan --change-set` makes one
    change set for the unknown verdict, deletes it, and the verdict is known from then on."""
    world.emulator.create_stack(
        "Boxed",
        {"EnvName": "boxed", "LcImageId": world.old, "MigrationLcImageId": world.old},
        template=with_box(),
    )
    world.add("Boxed", image=world.new)
    loaded = world.specs["Boxed"]
    observed, decision = world.eng.preview(loaded)
    assert decision.update is not None and decision.update.guarded and observed.stack
    sp = loaded.deployment.spec
    assert world.eng.verdict(sp, decision.update, observed.stack, make=False) is None
    assert change_sets_made(world) == 0
    made = world.eng.verdict(sp, decision.update, observed.stack, make=True)
    assert not isinstance(made, str) and made is not None and made.ok  # phase 1: no Box
    assert change_sets_made(world) == 1 and world.emulator.change_sets("Boxed") == []
    again = world.eng.verdict(sp, decision.update, observed.stack, make=True)
    assert again == made and change_sets_made(world) == 1
