"""Helpers for the emulator's tests: the shipped stack's parameters and short readers."""

from __future__ import annotations

from typing import Any

STACK = "Stack1"
UPDATE_SECONDS = 0.3  # long enough to observe *_IN_PROGRESS, short enough for a fast suite
PARAMETERS = (
    "EnvName",
    "KeyName",
    "RepoUrl",
    "BranchNameOrSha",
    "LcImageId",
    "MigrationLcImageId",
    "MigrationDesiredCapacity",
    "Asg1DesiredCapacity",
)


def update_params(**changes: str) -> list[dict[str, Any]]:
    """Every template parameter: the given ones with a value, the rest UsePreviousValue."""
    return [
        {"ParameterKey": k, "ParameterValue": changes[k]}
        if k in changes
        else {"ParameterKey": k, "UsePreviousValue": True}
        for k in PARAMETERS
    ]


def describe(cfn: Any, stack_name: str = STACK) -> dict[str, Any]:
    stacks: list[dict[str, Any]] = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    return stacks[0]


def live(cfn: Any, stack_name: str = STACK) -> dict[str, str]:
    return {p["ParameterKey"]: p["ParameterValue"] for p in describe(cfn, stack_name)["Parameters"]}


def stack_events(cfn: Any, stack_name: str = STACK) -> list[dict[str, Any]]:
    """Stack-level events, oldest first."""
    events: list[dict[str, Any]] = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
    return [e for e in reversed(events) if e["ResourceType"] == "AWS::CloudFormation::Stack"]
