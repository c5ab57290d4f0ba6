"""The emulator honours RollbackConfiguration as CloudFormation does (moto ignores it): a
trigger alarm in ALARM rolls an update in progress back; triggers persist per stack until an
update replaces them; DisableRollback leaves a failed update UPDATE_FAILED."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from reconciler.embedded import Emulator
from tests.embedded.embeddedkit import STACK, UPDATE_SECONDS, describe, live, stack_events
from tests.embedded.embeddedkit import update_params as params

LONG = 600.0  # seconds: an update that stays in progress until the test shortens it


def switch(images: tuple[str, str]) -> list[dict[str, Any]]:
    """The daemon's phase 2 on the shipped template: the API group gets the new image."""
    _, new = images
    return params(LcImageId=new, Asg1DesiredCapacity="1", MigrationDesiredCapacity="0")


def triggers(*arns: str) -> dict[str, Any]:
    return {
        "RollbackTriggers": [{"Arn": a, "Type": "AWS::CloudWatch::Alarm"} for a in arns],
        "MonitoringTimeInMinutes": 0,
    }


@pytest.fixture
def held(emulator: Emulator) -> Iterator[Emulator]:
    """Updates stay UPDATE_IN_PROGRESS until `release`: no race with the alarm."""
    emulator.update_seconds = LONG
    yield emulator
    emulator.update_seconds = UPDATE_SECONDS


def release(emulator: Emulator) -> None:
    """Later timelines (a rollback, or the next update) run at the suite's pace again; the
    held update itself stays in progress (its wait was computed when it started)."""
    emulator.update_seconds = UPDATE_SECONDS


def rollback_reason(cfn: Any) -> str:
    events = stack_events(cfn)
    (reason,) = [
        e.get("ResourceStatusReason", "")
        for e in events
        if e["ResourceStatus"] == "UPDATE_ROLLBACK_IN_PROGRESS"
    ][-1:]
    return str(reason)


def test_an_alarm_during_the_switch_rolls_it_back(
    held: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    old, new = images
    arn = held.put_alarm("api-5xx")
    cfn.update_stack(
        StackName=STACK,
        UsePreviousTemplate=True,
        Parameters=switch(images),
        RollbackConfiguration=triggers(arn),
    )
    assert live(cfn)["LcImageId"] == new
    release(held)
    held.set_alarm_state("api-5xx", "ALARM")
    # Before SetAlarmState returned: as AWS, the rollback began and names the alarm.
    shown = describe(cfn)
    assert shown["StackStatus"] == "UPDATE_ROLLBACK_IN_PROGRESS"
    assert arn in shown["StackStatusReason"] and "ALARM" in shown["StackStatusReason"]
    assert held.wait_settled(STACK) == "UPDATE_ROLLBACK_COMPLETE"
    assert live(cfn)["LcImageId"] == old
    assert live(cfn)["Asg1DesiredCapacity"] == "1"
    assert arn in rollback_reason(cfn)


@pytest.mark.parametrize("state", ["OK", "INSUFFICIENT_DATA"])
def test_an_alarm_not_in_alarm_lets_the_switch_complete(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str], state: str
) -> None:
    _, new = images
    arn = emulator.put_alarm("api-5xx", "ALARM")
    emulator.set_alarm_state("api-5xx", state)
    cfn.update_stack(
        StackName=STACK,
        UsePreviousTemplate=True,
        Parameters=switch(images),
        RollbackConfiguration=triggers(arn),
    )
    emulator.set_alarm_state("api-5xx", state)  # a CloudWatch call mid-update: checked
    assert emulator.wait_settled(STACK) == "UPDATE_COMPLETE"
    assert live(cfn)["LcImageId"] == new


def test_an_alarm_already_in_alarm_rolls_the_update_back_at_once(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    old, _ = images
    arn = emulator.put_alarm("api-5xx", "ALARM")
    cfn.update_stack(
        StackName=STACK,
        UsePreviousTemplate=True,
        Parameters=switch(images),
        RollbackConfiguration=triggers(arn),
    )
    assert emulator.wait_settled(STACK) == "UPDATE_ROLLBACK_COMPLETE"
    assert live(cfn)["LcImageId"] == old
    assert arn in rollback_reason(cfn)


def test_a_trigger_naming_no_alarm_rolls_the_update_back(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """AWS: "If a specified trigger is missing, the entire stack operation fails"."""
    arn = f"arn:aws:cloudwatch:us-east-1:{emulator.account_id}:alarm:gone"
    cfn.update_stack(
        StackName=STACK,
        UsePreviousTemplate=True,
        Parameters=switch(images),
        RollbackConfiguration=triggers(arn),
    )
    assert emulator.wait_settled(STACK) == "UPDATE_ROLLBACK_COMPLETE"
    assert arn in rollback_reason(cfn)


def test_triggers_persist_across_an_update_that_omits_them(
    held: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    old, new = images
    arn = held.put_alarm("api-5xx")
    release(held)
    cfn.update_stack(
        StackName=STACK,
        UsePreviousTemplate=True,
        Parameters=params(KeyName="first"),
        RollbackConfiguration=triggers(arn),
    )
    assert held.wait_settled(STACK) == "UPDATE_COMPLETE"
    held.update_seconds = LONG
    cfn.update_stack(StackName=STACK, UsePreviousTemplate=True, Parameters=switch(images))
    assert describe(cfn)["RollbackConfiguration"] == triggers(arn)
    assert live(cfn)["LcImageId"] == new
    release(held)
    held.set_alarm_state("api-5xx", "ALARM")
    assert held.wait_settled(STACK) == "UPDATE_ROLLBACK_COMPLETE"
    assert live(cfn)["LcImageId"] == old
    assert live(cfn)["KeyName"] == "first"  # only the second update was undone


def test_an_empty_trigger_list_clears_them(
    held: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    _, new = images
    arn = held.put_alarm("api-5xx")
    release(held)
    cfn.update_stack(
        StackName=STACK,
        UsePreviousTemplate=True,
        Parameters=params(KeyName="first"),
        RollbackConfiguration=triggers(arn),
    )
    assert held.wait_settled(STACK) == "UPDATE_COMPLETE"
    cfn.update_stack(
        StackName=STACK,
        UsePreviousTemplate=True,
        Parameters=switch(images),
        RollbackConfiguration=triggers(),
    )
    assert describe(cfn)["RollbackConfiguration"] == triggers()
    held.set_alarm_state("api-5xx", "ALARM")
    assert describe(cfn)["StackStatus"] != "UPDATE_ROLLBACK_IN_PROGRESS"
    assert held.wait_settled(STACK) == "UPDATE_COMPLETE"
    assert live(cfn)["LcImageId"] == new


def test_with_disable_rollback_an_alarm_leaves_the_update_failed_in_place(
    held: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """Nothing rolls back a switch the daemon marked irreversible: the stack stays
    UPDATE_FAILED on the new parameters, for a person to look at."""
    _, new = images
    arn = held.put_alarm("api-5xx")
    cfn.update_stack(
        StackName=STACK,
        UsePreviousTemplate=True,
        Parameters=switch(images),
        RollbackConfiguration=triggers(arn),
        DisableRollback=True,
    )
    release(held)
    held.set_alarm_state("api-5xx", "ALARM")
    shown = describe(cfn)
    assert shown["StackStatus"] == "UPDATE_FAILED"
    assert arn in shown["StackStatusReason"]
    assert live(cfn)["LcImageId"] == new
    statuses = [e["ResourceStatus"] for e in stack_events(cfn)]
    assert "UPDATE_ROLLBACK_IN_PROGRESS" not in statuses


def test_with_disable_rollback_a_failed_update_is_update_failed(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    _, new = images
    emulator.fail_next_update(STACK)
    cfn.update_stack(
        StackName=STACK, UsePreviousTemplate=True, Parameters=switch(images), DisableRollback=True
    )
    assert emulator.wait_settled(STACK) == "UPDATE_FAILED"
    assert live(cfn)["LcImageId"] == new
    assert (
        describe(cfn)["StackStatusReason"]
        == "The following resource(s) failed to update: [MigrationAsg]."
    )
