"""send_update(): one UpdateStack carrying every parameter; tokens that are stable."""

from __future__ import annotations

import re

import boto3
import pytest

from reconciler.aws.act import UpdateRefused, client_request_token, send_update
from reconciler.aws.clients import Clients
from reconciler.model import StackUpdate
from tests.integration.conftest import REGION, Stack

TOKEN_RE = re.compile(r"^[a-zA-Z][-a-zA-Z0-9]*$")


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


def test_token_is_deterministic_readable_and_valid() -> None:
    """Same inputs, same token; any input change, another token; AWS's token syntax."""
    token = client_request_token("biglearn-api", "migrate", "ami-37884c4d", "a1b2c3d4e5f6a7b8", 1)
    assert token == "rc-biglearn-api-migrate-ami-37884c4d-a1b2c3d4e5f6-1"
    assert token == client_request_token(
        "biglearn-api", "migrate", "ami-37884c4d", "a1b2c3d4e5f6a7b8", 1
    )
    others = {
        client_request_token("biglearn-api", "switch", "ami-37884c4d", "a1b2c3d4e5f6a7b8", 1),
        client_request_token("biglearn-api", "migrate", "ami-37884c4d", "a1b2c3d4e5f6a7b8", 2),
        client_request_token("biglearn-api", "migrate", "ami-00000000", "a1b2c3d4e5f6a7b8", 1),
    }
    assert token not in others and len(others) == 3


@pytest.mark.parametrize(
    "name",
    ["x" * 63, "a" * 200, "9-starts-with-digit", "odd chars/_.:", ""],
)
def test_token_fits_aws_rules_for_any_input(name: str) -> None:
    """Long or odd inputs still give a valid token of at most 128 characters."""
    token = client_request_token(name, "scale", "ami-0123456789abcdef0", "f" * 40, 12345)
    assert TOKEN_RE.match(token) and len(token) <= 128
    longer = client_request_token(name + "z", "scale", "ami-0123456789abcdef0", "f" * 40, 12345)
    assert longer != token
