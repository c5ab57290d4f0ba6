"""The emulator reads a template's intrinsic functions as CloudFormation does before an
update runs: parameters and pseudo parameters resolved, conditions decided, resources left
as named placeholders, and every parameter read recorded."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from reconciler.embedded.intrinsics import NO_VALUE, Evaluation, Reference, TemplateError

PSEUDO = {
    "AWS::Region": "us-east-1",
    "AWS::StackName": "Stack1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/Stack1/x",
    "AWS::NotificationARNs": [],
}
ZONES = ["us-east-1a", "us-east-1b", "us-east-1c"]
TEMPLATE: dict[str, Any] = {
    "Parameters": {
        "Env": {"Type": "String"},
        "Key": {"Type": "String"},
        "Size": {"Type": "Number"},
        "Subnets": {"Type": "CommaDelimitedList"},
    },
    "Conditions": {
        "HasKey": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Key"}, ""]}]},
        "IsProd": {"Fn::Equals": [{"Ref": "Env"}, "prod"]},
        "ProdWithKey": {"Fn::And": [{"Condition": "IsProd"}, {"Condition": "HasKey"}]},
        "ProdOrKey": {"Fn::Or": [{"Condition": "IsProd"}, {"Condition": "HasKey"}]},
    },
    "Mappings": {"Sizes": {"prod": {"Type": "m5.large"}, "dev": {"Type": "t3.micro"}}},
    "Resources": {
        "Lt": {"Type": "AWS::EC2::LaunchTemplate"},
        "Box": {"Type": "AWS::EC2::Instance", "Condition": "IsProd"},
    },
}
PARAMETERS = {"Env": "dev", "Key": "", "Size": "2", "Subnets": "subnet-a,subnet-b"}


def value(expression: Any, **parameters: str) -> Any:
    found, _ = Evaluation(TEMPLATE, {**PARAMETERS, **parameters}, PSEUDO, ZONES).value(expression)
    return found


def reads(expression: Any) -> tuple[set[str], set[str]]:
    """(parameters, resource entities) the expression read."""
    _, read = Evaluation(TEMPLATE, PARAMETERS, PSEUDO, ZONES).value(expression)
    return set(read.parameters), {r.entity for r in read.references}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ({"Ref": "Env"}, "dev"),
        ({"Ref": "Size"}, "2"),
        ({"Ref": "Subnets"}, ["subnet-a", "subnet-b"]),
        ({"Ref": "AWS::Region"}, "us-east-1"),
        ({"Ref": "AWS::StackName"}, "Stack1"),
        ({"Fn::Sub": "${AWS::StackName}-api-${Env}"}, "Stack1-api-dev"),
        ({"Fn::Sub": ["${Name}:${Env}", {"Name": {"Ref": "Size"}}]}, "2:dev"),
        ({"Fn::Sub": "${!Literal}-${Env}"}, "${Literal}-dev"),
        ({"Fn::Join": ["-", [{"Ref": "Env"}, "api", {"Ref": "Size"}]]}, "dev-api-2"),
        ({"Fn::Join": [",", {"Ref": "Subnets"}]}, "subnet-a,subnet-b"),
        ({"Fn::Select": ["1", {"Ref": "Subnets"}]}, "subnet-b"),
        ({"Fn::Select": [0, {"Fn::GetAZs": ""}]}, "us-east-1a"),
        ({"Fn::GetAZs": {"Ref": "AWS::Region"}}, ZONES),
        ({"Fn::Split": ["-", "a-b"]}, ["a", "b"]),
        ({"Fn::Base64": {"Fn::Sub": "env=${Env}"}}, base64.b64encode(b"env=dev").decode()),
        ({"Fn::If": ["IsProd", "big", "small"]}, "small"),
        ({"Fn::If": ["HasKey", {"Ref": "Key"}, {"Ref": "AWS::NoValue"}]}, NO_VALUE),
        ({"Fn::FindInMap": ["Sizes", {"Ref": "Env"}, "Type"]}, "t3.micro"),
        ({"Fn::ToJsonString": {"a": {"Ref": "Env"}}}, '{"a":"dev"}'),
        ({"Fn::Length": {"Ref": "Subnets"}}, 2),
    ],
)
def test_each_function_evaluates_as_cloudformation_documents_it(
    expression: Any, expected: Any
) -> None:
    assert value(expression) == expected


def test_no_value_removes_the_key_or_the_list_item_it_stands_for() -> None:
    dropped = {"Fn::If": ["HasKey", {"Ref": "Key"}, {"Ref": "AWS::NoValue"}]}
    assert value({"ImageId": "ami-1", "KeyName": dropped}) == {"ImageId": "ami-1"}
    assert value(["a", dropped, "b"]) == ["a", "b"]
    assert value({"KeyName": dropped}, Key="ops") == {"KeyName": "ops"}


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({}, (False, False, False)),
        ({"Env": "prod"}, (True, False, True)),
        ({"Key": "ops"}, (False, False, True)),
        ({"Env": "prod", "Key": "ops"}, (True, True, True)),
    ],
)
def test_conditions_combine_with_and_or_not(
    parameters: dict[str, str], expected: tuple[bool, bool, bool]
) -> None:
    evaluation = Evaluation(TEMPLATE, {**PARAMETERS, **parameters}, PSEUDO, ZONES)
    names = ("IsProd", "ProdWithKey", "ProdOrKey")
    assert tuple(evaluation.condition(name)[0] for name in names) == expected


def test_a_resource_exists_while_its_condition_holds() -> None:
    assert not Evaluation(TEMPLATE, PARAMETERS, PSEUDO, ZONES).exists("Box")
    assert Evaluation(TEMPLATE, {**PARAMETERS, "Env": "prod"}, PSEUDO, ZONES).exists("Box")
    assert Evaluation(TEMPLATE, PARAMETERS, PSEUDO, ZONES).exists("Lt")


def test_resources_are_placeholders_that_name_them() -> None:
    """A Ref or GetAtt of a resource is unknown before the update: the same placeholder on
    both sides, recorded as read (Sub's ${Res} and ${Res.Attr} too)."""
    assert value({"Ref": "Lt"}) == "{{Lt}}"
    assert value({"Fn::GetAtt": ["Lt", "LatestVersionNumber"]}) == "{{Lt.LatestVersionNumber}}"
    assert value({"Fn::GetAtt": "Lt.LatestVersionNumber"}) == "{{Lt.LatestVersionNumber}}"
    assert reads({"Fn::Sub": "${Lt}:${Lt.LaunchTemplateId}"}) == (
        set(),
        {"Lt", "Lt.LaunchTemplateId"},
    )
    assert Reference("Lt", "LatestVersionNumber").entity == "Lt.LatestVersionNumber"


def test_parameters_read_through_a_condition_are_recorded() -> None:
    """Fn::If names the parameters its condition read: they can cause the change."""
    assert reads({"Fn::If": ["ProdWithKey", "a", {"Ref": "Size"}]}) == (
        {"Env", "Key", "Size"},
        set(),
    )
    assert reads({"Fn::Sub": "${AWS::Region}-${Env}"}) == ({"Env"}, set())


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ({"Ref": "Nowhere"}, "Unresolved resource dependencies [Nowhere]"),
        ({"Fn::GetAtt": ["Nowhere", "Arn"]}, "undefined resource Nowhere"),
        ({"Fn::If": ["NoSuchCondition", "a", "b"]}, "Unresolved dependencies [NoSuchCondition]"),
        ({"Fn::Select": ["5", {"Ref": "Subnets"}]}, "nonexistent value at index 5"),
        ({"Fn::Join": ["-"]}, "Fn::Join needs 2 arguments"),
    ],
)
def test_a_template_cloudformation_refuses_raises_its_error(expression: Any, message: str) -> None:
    with pytest.raises(TemplateError, match=message.replace("[", r"\[").replace("]", r"\]")):
        value(expression)
