"""The emulator's CloudFormation updates behave as AWS's do, where a client can tell."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from botocore.exceptions import ClientError

from reconciler.embedded import Emulator
from tests.embedded.embeddedkit import STACK, describe, live, stack_events, update_params


def _statuses_since_update(cfn: Any) -> list[str]:
    events = stack_events(cfn)
    first = max(i for i, e in enumerate(events) if e["ResourceStatus"] == "UPDATE_IN_PROGRESS")
    return [e["ResourceStatus"] for e in events[first:]]


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    response: Any = exc.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


def test_update_is_in_progress_then_cleanup_then_complete(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """An update answers at once, stays UPDATE_IN_PROGRESS, and ends UPDATE_COMPLETE."""
    _, new = images
    cfn.update_stack(
        StackName=STACK, UsePreviousTemplate=True, Parameters=update_params(LcImageId=new)
    )
    assert describe(cfn)["StackStatus"] == "UPDATE_IN_PROGRESS"
    assert emulator.wait_settled(STACK) == "UPDATE_COMPLETE"
    assert _statuses_since_update(cfn) == [
        "UPDATE_IN_PROGRESS",
        "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
        "UPDATE_COMPLETE",
    ]


def test_parameters_show_the_new_values_while_in_progress(
    stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """As in AWS, describe_stacks shows the update's parameters as soon as it starts."""
    _, new = images
    cfn.update_stack(
        StackName=STACK, UsePreviousTemplate=True, Parameters=update_params(LcImageId=new)
    )
    assert describe(cfn)["StackStatus"] == "UPDATE_IN_PROGRESS"
    assert live(cfn)["LcImageId"] == new


def test_second_update_while_in_progress_is_refused_as_aws_does(
    stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """UpdateStack during UPDATE_IN_PROGRESS: 400 ValidationError naming the stack's ARN."""
    _, new = images
    cfn.update_stack(
        StackName=STACK, UsePreviousTemplate=True, Parameters=update_params(LcImageId=new)
    )
    with pytest.raises(ClientError) as exc:
        cfn.update_stack(
            StackName=STACK,
            UsePreviousTemplate=True,
            Parameters=update_params(Asg1DesiredCapacity="2"),
        )
    expected = f"Stack:{stack} is in UPDATE_IN_PROGRESS state and can not be updated."
    assert _error(exc) == ("ValidationError", expected, 400)


def test_a_retried_request_with_the_same_token_is_accepted_once(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """Resending the in-progress update's ClientRequestToken is idempotent: one update."""
    _, new = images
    request = {
        "StackName": STACK,
        "UsePreviousTemplate": True,
        "Parameters": update_params(LcImageId=new),
        "ClientRequestToken": "deploy-1",
    }
    first = cfn.update_stack(**request)["StackId"]
    assert cfn.update_stack(**request)["StackId"] == first
    emulator.wait_settled(STACK)
    assert _statuses_since_update(cfn).count("UPDATE_IN_PROGRESS") == 1


def test_noop_update_answers_no_updates_are_to_be_performed(
    stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """Same template and same values: ValidationError, and the stack stays as it is."""
    old, _ = images
    with pytest.raises(ClientError) as exc:
        cfn.update_stack(
            StackName=STACK, UsePreviousTemplate=True, Parameters=update_params(LcImageId=old)
        )
    assert _error(exc) == ("ValidationError", "No updates are to be performed.", 400)
    assert describe(cfn)["StackStatus"] == "CREATE_COMPLETE"


def test_failed_update_rolls_back_to_the_old_parameters(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """fail_next_update: IN_PROGRESS, ROLLBACK_IN_PROGRESS (with reason), ROLLBACK_COMPLETE."""
    old, new = images
    emulator.fail_next_update(STACK, reason="MigrationAsg: instance failed to signal")
    cfn.update_stack(
        StackName=STACK,
        UsePreviousTemplate=True,
        Parameters=update_params(MigrationLcImageId=new, MigrationDesiredCapacity="1"),
    )
    assert emulator.wait_settled(STACK) == "UPDATE_ROLLBACK_COMPLETE"
    assert _statuses_since_update(cfn) == [
        "UPDATE_IN_PROGRESS",
        "UPDATE_ROLLBACK_IN_PROGRESS",
        "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
        "UPDATE_ROLLBACK_COMPLETE",
    ]
    rollback = next(
        e for e in stack_events(cfn) if e["ResourceStatus"] == "UPDATE_ROLLBACK_IN_PROGRESS"
    )
    assert rollback["ResourceStatusReason"] == "MigrationAsg: instance failed to signal"
    params = live(cfn)
    assert (params["MigrationLcImageId"], params["MigrationDesiredCapacity"]) == (old, "0")


def test_only_the_next_update_fails(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """After a rollback the same update, sent again, completes."""
    _, new = images
    emulator.fail_next_update(STACK)
    request = {
        "StackName": STACK,
        "UsePreviousTemplate": True,
        "Parameters": update_params(LcImageId=new),
    }
    cfn.update_stack(**request)
    assert emulator.wait_settled(STACK) == "UPDATE_ROLLBACK_COMPLETE"
    cfn.update_stack(**request)
    assert emulator.wait_settled(STACK) == "UPDATE_COMPLETE"
    assert live(cfn)["LcImageId"] == new


def test_last_updated_time_is_reported_after_an_update(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """No LastUpdatedTime after create; after an update, the time the update started."""
    _, new = images
    assert "LastUpdatedTime" not in describe(cfn)
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    cfn.update_stack(
        StackName=STACK, UsePreviousTemplate=True, Parameters=update_params(LcImageId=new)
    )
    emulator.wait_settled(STACK)
    updated = describe(cfn)["LastUpdatedTime"]
    assert before <= updated <= dt.datetime.now(dt.UTC)


def test_every_event_of_an_update_carries_its_client_request_token(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """Stack events name the ClientRequestToken of the update that caused them."""
    _, new = images
    cfn.update_stack(
        StackName=STACK,
        UsePreviousTemplate=True,
        Parameters=update_params(LcImageId=new),
        ClientRequestToken="biglearn-api-switch-1",
    )
    emulator.wait_settled(STACK)
    events = stack_events(cfn)
    tokens = {e["ResourceStatus"]: e.get("ClientRequestToken") for e in events}
    assert tokens["UPDATE_IN_PROGRESS"] == "biglearn-api-switch-1"
    assert tokens["UPDATE_COMPLETE"] == "biglearn-api-switch-1"
    assert tokens["CREATE_COMPLETE"] is None


def test_a_parameter_left_out_falls_back_to_its_template_default(
    emulator: Emulator, images: tuple[str, str], cfn: Any
) -> None:
    """As in AWS: an omitted parameter takes the template default, not its live value."""
    old, new = images
    emulator.create_stack(
        STACK, {"LcImageId": old, "MigrationLcImageId": old, "Asg1DesiredCapacity": "3"}
    )
    cfn.update_stack(
        StackName=STACK,
        UsePreviousTemplate=True,
        Parameters=[
            {"ParameterKey": "LcImageId", "ParameterValue": new},
            {"ParameterKey": "MigrationLcImageId", "UsePreviousValue": True},
        ],
    )
    emulator.wait_settled(STACK)
    assert live(cfn)["Asg1DesiredCapacity"] == "1"


def test_a_required_parameter_left_out_is_refused(
    stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """A parameter with no default and no value: ValidationError, as AWS answers."""
    _, new = images
    with pytest.raises(ClientError) as exc:
        cfn.update_stack(
            StackName=STACK,
            UsePreviousTemplate=True,
            Parameters=[{"ParameterKey": "LcImageId", "ParameterValue": new}],
        )
    assert _error(exc) == (
        "ValidationError",
        "Parameters: [MigrationLcImageId] must have values",
        400,
    )


def test_a_parameter_the_template_lacks_is_refused(stack: str, cfn: Any) -> None:
    """A typo in a parameter name is an error, never silently dropped."""
    params = [*update_params(), {"ParameterKey": "LcImageID", "ParameterValue": "ami-1"}]
    with pytest.raises(ClientError) as exc:
        cfn.update_stack(StackName=STACK, UsePreviousTemplate=True, Parameters=params)
    assert _error(exc)[:2] == (
        "ValidationError",
        "Parameters: [LcImageID] do not exist in the template",
    )


def test_a_stack_that_needs_a_person_refuses_updates(
    emulator: Emulator, stack: str, cfn: Any
) -> None:
    """set_stack_status(UPDATE_ROLLBACK_FAILED): describe shows it, UpdateStack is refused."""
    emulator.set_stack_status(STACK, "UPDATE_ROLLBACK_FAILED")
    assert describe(cfn)["StackStatus"] == "UPDATE_ROLLBACK_FAILED"
    with pytest.raises(ClientError) as exc:
        cfn.update_stack(
            StackName=STACK,
            UsePreviousTemplate=True,
            Parameters=update_params(Asg1DesiredCapacity="2"),
        )
    expected = f"Stack:{stack} is in UPDATE_ROLLBACK_FAILED state and can not be updated."
    assert _error(exc) == ("ValidationError", expected, 400)


def test_set_stack_status_freezes_an_update_in_progress(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """A forced status ends the update's timeline: it is not overwritten later."""
    _, new = images
    cfn.update_stack(
        StackName=STACK, UsePreviousTemplate=True, Parameters=update_params(LcImageId=new)
    )
    emulator.set_stack_status(STACK, "UPDATE_ROLLBACK_FAILED")
    emulator.update_seconds = 0.0
    emulator.updates.join(timeout=2.0)
    assert describe(cfn)["StackStatus"] == "UPDATE_ROLLBACK_FAILED"


def test_updating_a_missing_stack_says_it_does_not_exist(emulator: Emulator, cfn: Any) -> None:
    """UpdateStack on an unknown name: ValidationError, as AWS answers."""
    with pytest.raises(ClientError) as exc:
        cfn.update_stack(StackName="Nope", UsePreviousTemplate=True, Parameters=[])
    assert _error(exc) == ("ValidationError", "Stack [Nope] does not exist", 400)


def test_delete_stack_removes_it(emulator: Emulator, stack: str, cfn: Any) -> None:
    """After delete_stack, describe_stacks by name fails as for any missing stack."""
    emulator.delete_stack(STACK)
    with pytest.raises(ClientError) as exc:
        describe(cfn)
    assert _error(exc)[0] == "ValidationError"


def test_cancel_update_stack_rolls_the_update_back(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """CancelUpdateStack during UPDATE_IN_PROGRESS: rollback to the old parameters."""
    old, new = images
    cfn.update_stack(
        StackName=STACK, UsePreviousTemplate=True, Parameters=update_params(LcImageId=new)
    )
    cfn.cancel_update_stack(StackName=STACK)
    assert emulator.wait_settled(STACK) == "UPDATE_ROLLBACK_COMPLETE"
    assert live(cfn)["LcImageId"] == old


def test_cancel_without_an_update_in_progress_is_refused(stack: str, cfn: Any) -> None:
    """CancelUpdateStack on a settled stack: ValidationError."""
    with pytest.raises(ClientError) as exc:
        cfn.cancel_update_stack(StackName=STACK)
    assert _error(exc)[0] == "ValidationError"


def test_continue_update_rollback_brings_back_the_old_parameters(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """A person's fix for UPDATE_ROLLBACK_FAILED: ContinueUpdateRollback ends it completed."""
    old, new = images
    cfn.update_stack(
        StackName=STACK, UsePreviousTemplate=True, Parameters=update_params(LcImageId=new)
    )
    emulator.set_stack_status(STACK, "UPDATE_ROLLBACK_FAILED")
    cfn.continue_update_rollback(StackName=STACK)
    assert emulator.wait_settled(STACK) == "UPDATE_ROLLBACK_COMPLETE"
    assert live(cfn)["LcImageId"] == old
