"""send_update(): one UpdateStack carrying every parameter; a no-op or a refusal told apart."""

from __future__ import annotations

import boto3
import pytest

from reconciler.aws.act import UpdateRefused, send_update
from reconciler.aws.clients import Clients
from reconciler.model import StackUpdate
from tests.integration.conftest import REGION, Stack


def _live(name: str) -> dict[str, str]:
    stack = boto3.client("cloudformation", region_name=REGION).describe_stacks(StackName=name)
    return {p["ParameterKey"]: p["ParameterValue"] for p in stack["Stacks"][0]["Parameters"]}


def _update(stack: Stack, changes: dict[str, str], token: str = "rc-test-1") -> StackUpdate:
    params = tuple((k, changes.get(k)) for k in stack.parameters)
    return StackUpdate("migrate", params, token)


def test_update_sets_given_values_and_keeps_the_rest(stack: Stack, clients: Clients) -> None:
    """Changed parameters take their values; every other one keeps its live value
    (UsePreviousValue), not the template default."""
    changes = {"MigrationLcImageId": stack.new_image, "MigrationDesiredCapacity": "1"}
    assert send_update(clients, stack.spec(), _update(stack, changes)) == "sent"
    assert _live(stack.name) == {**stack.parameters, **changes}


def test_update_sends_every_parameter(stack: Stack, clients: Clients) -> None:
    """The request itself lists every parameter, unchanged ones as UsePreviousValue."""
    sent: list[dict[str, object]] = []
    cfn = clients.cloudformation(REGION)
    cfn.meta.events.register(
        "provide-client-params.cloudformation.UpdateStack",
        lambda params, **_: sent.append(params),
    )
    send_update(clients, stack.spec(), _update(stack, {"KeyName": "other"}))
    (request,) = sent
    assert request["UsePreviousTemplate"] is True
    assert request["ClientRequestToken"] == "rc-test-1"
    by_key = {p["ParameterKey"]: p for p in request["Parameters"]}  # type: ignore[attr-defined]
    assert set(by_key) == set(stack.parameters)
    assert by_key["KeyName"] == {"ParameterKey": "KeyName", "ParameterValue": "other"}
    assert by_key["EnvName"] == {"ParameterKey": "EnvName", "UsePreviousValue": True}


def test_an_update_that_changes_nothing_is_a_noop(stack: Stack, clients: Clients) -> None:
    """ "No updates are to be performed." is success: "noop"."""
    update = _update(stack, {"LcImageId": stack.old_image})
    assert send_update(clients, stack.spec(), update) == "noop"


def test_a_refused_update_raises_with_code_and_message(stack: Stack, clients: Clients) -> None:
    """Any other refusal (here: no such stack) is UpdateRefused(code, message)."""
    sp = stack.spec(stackName="Gone")
    with pytest.raises(UpdateRefused) as caught:
        send_update(clients, sp, _update(stack, {"KeyName": "x"}))
    assert caught.value.code == "ValidationError"
    assert "Gone" in caught.value.message


def _sent(clients: Clients) -> list[dict[str, object]]:
    """The UpdateStack requests `clients` makes from now on, as boto3 was given them."""
    sent: list[dict[str, object]] = []
    clients.cloudformation(REGION).meta.events.register(
        "provide-client-params.cloudformation.UpdateStack",
        lambda params, **_: sent.append(dict(params)),
    )
    return sent


ARN = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:api-5xx"


def test_every_update_states_its_rollback_triggers(stack: Stack, clients: Clients) -> None:
    """An update with triggers sends them as CloudWatch alarm triggers, monitored 0 minutes;
    one without sends an empty list, which clears the triggers a switch left on the stack
    (CloudFormation keeps them for later updates otherwise)."""
    sent = _sent(clients)
    switch = StackUpdate("switch", _update(stack, {"KeyName": "a"}).parameters, "t-1", (ARN,))
    migrate = _update(stack, {"KeyName": "b"}, token="t-2")
    assert send_update(clients, stack.spec(), switch) == "sent"
    assert send_update(clients, stack.spec(), migrate) == "sent"
    first, second = sent
    assert first["RollbackConfiguration"] == {
        "RollbackTriggers": [{"Arn": ARN, "Type": "AWS::CloudWatch::Alarm"}],
        "MonitoringTimeInMinutes": 0,
    }
    assert second["RollbackConfiguration"] == {
        "RollbackTriggers": [],
        "MonitoringTimeInMinutes": 0,
    }
    assert "DisableRollback" not in first and "DisableRollback" not in second


def test_disable_rollback_is_sent_only_when_asked(stack: Stack, clients: Clients) -> None:
    sent = _sent(clients)
    params = _update(stack, {"KeyName": "c"}).parameters
    update = StackUpdate("switch", params, "t-3", (ARN,), disable_rollback=True)
    assert send_update(clients, stack.spec(), update) == "sent"
    (request,) = sent
    assert request["DisableRollback"] is True
    assert request["ClientRequestToken"] == "t-3"
    assert _live(stack.name)["KeyName"] == "c"
