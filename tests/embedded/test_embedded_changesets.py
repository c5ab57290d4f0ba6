"""The emulator's change sets say what an update would do, as CloudFormation's do: the
Changes computed from the template and both sets of parameters, the lifecycle
(CREATE_PENDING, CREATE_IN_PROGRESS, CREATE_COMPLETE or FAILED), AWS's errors, IAM, and a
stack that no change set ever touches."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from reconciler.embedded import Emulator, behaviours, changes, intrinsics, template_body, wait_for
from tests.embedded.embeddedkit import STACK, describe, live, stack_events, update_params

CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
NO_CHANGES = (
    "The submitted information didn't contain changes. "
    "Submit different information to create a change set."
)
SHIPPED = json.loads(template_body())


# --- helpers ------------------------------------------------------------------------------


def create(cfn: Any, name: str = "guard", stack: str = STACK, **changed: str) -> dict[str, Any]:
    """The guard's request: the update's parameters, the previous template."""
    answer: dict[str, Any] = cfn.create_change_set(
        StackName=stack,
        ChangeSetName=name,
        ChangeSetType="UPDATE",
        UsePreviousTemplate=True,
        Parameters=update_params(**changed),
        Capabilities=CAPABILITIES,
    )
    return answer


def settled(cfn: Any, name: str = "guard", stack: str = STACK) -> dict[str, Any]:
    """DescribeChangeSet once it is final, every page of its Changes gathered."""

    def final() -> dict[str, Any] | None:
        shown: dict[str, Any] = cfn.describe_change_set(StackName=stack, ChangeSetName=name)
        return None if shown["Status"] in ("CREATE_PENDING", "CREATE_IN_PROGRESS") else shown

    shown = wait_for(final, timeout=10.0, what=f"change set {name} to be final")
    while "NextToken" in shown:
        page = cfn.describe_change_set(
            StackName=stack, ChangeSetName=name, NextToken=shown.pop("NextToken")
        )
        shown["Changes"] += page["Changes"]
        if "NextToken" in page:
            shown["NextToken"] = page["NextToken"]
    return shown


def actions(shown: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    """{logical id: (Action, Replacement)} of a described change set."""
    return {
        c["ResourceChange"]["LogicalResourceId"]: (
            c["ResourceChange"]["Action"],
            c["ResourceChange"].get("Replacement"),
        )
        for c in shown["Changes"]
    }


def change_of(shown: dict[str, Any], logical_id: str) -> dict[str, Any]:
    (found,) = [
        c["ResourceChange"]
        for c in shown["Changes"]
        if c["ResourceChange"]["LogicalResourceId"] == logical_id
    ]
    return found


def details(change: dict[str, Any]) -> set[tuple[str | None, str, str, str | None, str]]:
    """(Target name or attribute, Evaluation, ChangeSource, CausingEntity, RequiresRecreation)."""
    return {
        (
            d["Target"].get("Name", d["Target"]["Attribute"]),
            d["Evaluation"],
            d["ChangeSource"],
            d.get("CausingEntity"),
            d["Target"]["RequiresRecreation"],
        )
        for d in change["Details"]
    }


def error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    response: Any = exc.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


def shipped_with(**resources: Any) -> str:
    """The shipped template with more resources."""
    template = copy.deepcopy(SHIPPED)
    template["Resources"].update(resources)
    return json.dumps(template)


def created(emulator: Emulator, images: tuple[str, str], template: str, **values: str) -> str:
    old, _ = images
    parameters = {"LcImageId": old, "MigrationLcImageId": old, **values}
    return emulator.create_stack(STACK, parameters, template=template)


# --- the shipped template: only the managed groups and their launch templates move ---------


def test_an_image_bump_of_the_api_group_modifies_its_launch_template_and_group_in_place(
    stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """LcImageId: the launch template gets a new version (a ParameterReference on its
    data), the group follows its LatestVersionNumber (a Dynamic ResourceAttribute)."""
    _, new = images
    answer = create(cfn, LcImageId=new)
    assert answer["StackId"] == stack
    assert answer["Id"].startswith("arn:aws:cloudformation:us-east-1:")
    assert ":changeSet/guard/" in answer["Id"]
    shown = settled(cfn)
    assert (shown["Status"], shown["ExecutionStatus"]) == ("CREATE_COMPLETE", "AVAILABLE")
    assert actions(shown) == {
        "ApiLaunchTemplate": ("Modify", "False"),
        "Asg1": ("Modify", "False"),
    }
    template = change_of(shown, "ApiLaunchTemplate")
    assert template["Scope"] == ["Properties"]
    assert template["PhysicalResourceId"].startswith("lt-")
    assert details(template) == {
        ("LaunchTemplateData", "Dynamic", "DirectModification", None, "Never"),
        ("LaunchTemplateData", "Static", "ParameterReference", "LcImageId", "Never"),
    }
    group = change_of(shown, "Asg1")
    assert group["Scope"] == ["Properties", "Metadata"]
    assert (
        "LaunchTemplate",
        "Dynamic",
        "ResourceAttribute",
        "ApiLaunchTemplate.LatestVersionNumber",
        "Never",
    ) in details(group)
    assert ("Metadata", "Static", "ParameterReference", "LcImageId", "Never") in details(group)


def test_phase_one_modifies_only_the_migration_launch_template_and_group(
    stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    _, new = images
    create(cfn, MigrationLcImageId=new, MigrationDesiredCapacity="1")
    shown = settled(cfn)
    assert actions(shown) == {
        "MigrationLaunchTemplate": ("Modify", "False"),
        "MigrationAsg": ("Modify", "False"),
    }
    assert (
        "DesiredCapacity",
        "Static",
        "ParameterReference",
        "MigrationDesiredCapacity",
        "Never",
    ) in details(change_of(shown, "MigrationAsg"))


def test_the_switch_after_phase_one_moves_the_api_group_and_stops_the_migration_group(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    _, new = images
    cfn.update_stack(
        StackName=STACK,
        UsePreviousTemplate=True,
        Parameters=update_params(MigrationLcImageId=new, MigrationDesiredCapacity="1"),
    )
    assert emulator.wait_settled(STACK) == "UPDATE_COMPLETE"
    create(cfn, LcImageId=new, MigrationDesiredCapacity="0")
    assert actions(settled(cfn)) == {
        "ApiLaunchTemplate": ("Modify", "False"),
        "Asg1": ("Modify", "False"),
        "MigrationAsg": ("Modify", "False"),
    }


# --- replacements ---------------------------------------------------------------------------


def test_an_instance_fed_by_the_image_parameter_is_replaced_and_refs_to_it_move(
    emulator: Emulator, cfn: Any, images: tuple[str, str]
) -> None:
    """ImageId requires replacement: Box is Modify/True; BoxLb's Instances, a Ref to Box,
    moves with it (Dynamic ResourceReference) but a load balancer keeps its id."""
    _, new = images
    box = {
        "Type": "AWS::EC2::Instance",
        "Properties": {"ImageId": {"Ref": "LcImageId"}, "InstanceType": "t3.micro"},
    }
    box_lb = {
        "Type": "AWS::ElasticLoadBalancing::LoadBalancer",
        "Properties": {
            "AvailabilityZones": {"Fn::GetAZs": ""},
            "Listeners": [{"LoadBalancerPort": "80", "InstancePort": "80", "Protocol": "HTTP"}],
            "Instances": [{"Ref": "Box"}],
        },
    }
    created(emulator, images, shipped_with(Box=box, BoxLb=box_lb))
    create(cfn, LcImageId=new)
    shown = settled(cfn)
    assert actions(shown) == {
        "ApiLaunchTemplate": ("Modify", "False"),
        "Asg1": ("Modify", "False"),
        "Box": ("Modify", "True"),
        "BoxLb": ("Modify", "False"),
    }
    assert details(change_of(shown, "Box")) == {
        ("ImageId", "Dynamic", "DirectModification", None, "Always"),
        ("ImageId", "Static", "ParameterReference", "LcImageId", "Always"),
    }
    assert details(change_of(shown, "BoxLb")) == {
        ("Instances", "Dynamic", "ResourceReference", "Box", "Never"),
    }
    assert change_of(shown, "Box")["PhysicalResourceId"].startswith("i-")


def replacements(cfn: Any, cases: list[tuple[str, str, str, str]]) -> dict[str, Any]:
    """One change set per case on the stack, each moving one parameter (named as the
    property it feeds) from its value to the case's: {property: (Action, Replacement) of
    every resource it touches, and its detail on that property}."""
    found: dict[str, Any] = {}
    for prop, _, after, _ in cases:
        name = f"move-{prop}"
        cfn.create_change_set(
            StackName=STACK,
            ChangeSetName=name,
            UsePreviousTemplate=True,
            Parameters=[
                {"ParameterKey": p, "ParameterValue": after}
                if p == prop
                else {"ParameterKey": p, "UsePreviousValue": True}
                for p, _, _, _ in cases
            ],
        )
        shown = settled(cfn, name)
        (logical,) = actions(shown)
        found[prop] = (
            actions(shown)[logical][1],
            {d for d in details(change_of(shown, logical)) if d[1] == "Static"},
        )
    return found


def expected(cases: list[tuple[str, str, str, str]]) -> dict[str, Any]:
    recreation = {"True": "Always", "Conditional": "Conditionally", "False": "Never"}
    return {
        prop: (replacement, {(prop, "Static", "ParameterReference", prop, recreation[replacement])})
        for prop, _, _, replacement in cases
    }


def from_parameters(kind: str, cases: list[tuple[str, str, str, str]], **fixed: Any) -> str:
    """A template of one resource whose properties each come from a parameter."""
    return json.dumps(
        {
            "Parameters": {p: {"Type": "String", "Default": v} for p, v, _, _ in cases},
            "Resources": {
                "Res": {
                    "Type": kind,
                    "Properties": {**{p: {"Ref": p} for p, _, _, _ in cases}, **fixed},
                }
            },
        }
    )


def test_an_instance_property_replaces_it_as_the_reference_documents(
    emulator: Emulator, cfn: Any, images: tuple[str, str]
) -> None:
    old, new = images
    cases = [  # property, its value in the stack, in the change set, Replacement
        ("ImageId", old, new, "True"),
        ("KeyName", "ops", "ops2", "True"),
        ("AvailabilityZone", "us-east-1a", "us-east-1b", "True"),
        ("InstanceType", "t3.micro", "t3.small", "False"),
        ("UserData", "ZWNobyBh", "ZWNobyBi", "False"),
    ]
    emulator.create_stack(STACK, {}, template=from_parameters("AWS::EC2::Instance", cases))
    assert replacements(cfn, cases) == expected(cases)


def test_a_database_property_replaces_it_as_the_reference_documents(
    emulator: Emulator, cfn: Any
) -> None:
    cases = [  # property, its value in the stack, in the change set, Replacement
        ("DBName", "app", "app2", "True"),
        ("Engine", "postgres", "mysql", "Conditional"),
        ("MasterUsername", "admin", "root", "True"),
        ("DBSnapshotIdentifier", "", "snap-1", "True"),
        ("StorageEncrypted", "false", "true", "True"),
        ("KmsKeyId", "", "alias/app", "True"),
        ("DBInstanceClass", "db.t3.micro", "db.t3.small", "False"),
        ("AllocatedStorage", "20", "40", "False"),
        ("EngineVersion", "15.4", "16.1", "False"),
    ]
    template = from_parameters("AWS::RDS::DBInstance", cases, MasterUserPassword="not-secret")
    emulator.create_stack(STACK, {}, template=template)
    assert replacements(cfn, cases) == expected(cases)


def test_a_type_the_table_lacks_is_conditionally_replaced(emulator: Emulator, cfn: Any) -> None:
    """Unknown to the behaviour table: Conditional, the answer a guard cannot take for safe."""
    template = {
        "Parameters": {"Shown": {"Type": "String", "Default": "before"}},
        "Resources": {
            "Topic": {"Type": "AWS::SNS::Topic", "Properties": {"DisplayName": {"Ref": "Shown"}}}
        },
    }
    emulator.create_stack(STACK, {}, template=json.dumps(template))
    cfn.create_change_set(
        StackName=STACK,
        ChangeSetName="guard",
        UsePreviousTemplate=True,
        Parameters=[{"ParameterKey": "Shown", "ParameterValue": "after"}],
    )
    assert actions(settled(cfn)) == {"Topic": ("Modify", "Conditional")}


# --- conditions: resources come and go -----------------------------------------------------


BOX_IF_KEY = {
    "Type": "AWS::EC2::Instance",
    "Condition": "HasKeyName",
    "Properties": {"ImageId": {"Ref": "LcImageId"}, "KeyName": {"Ref": "KeyName"}},
}


def test_a_condition_turning_true_adds_its_resource(
    emulator: Emulator, cfn: Any, images: tuple[str, str]
) -> None:
    created(emulator, images, shipped_with(Box=BOX_IF_KEY))
    create(cfn, KeyName="ops")
    shown = settled(cfn)
    box = change_of(shown, "Box")
    assert (box["Action"], box["Scope"], box["Details"]) == ("Add", [], [])
    assert "Replacement" not in box and "PhysicalResourceId" not in box
    # The launch templates read KeyName through the same condition: modified in place.
    assert actions(shown)["ApiLaunchTemplate"] == ("Modify", "False")
    assert ("LaunchTemplateData", "Static", "ParameterReference", "KeyName", "Never") in details(
        change_of(shown, "ApiLaunchTemplate")
    )


def test_a_condition_turning_false_removes_its_resource(
    emulator: Emulator, cfn: Any, images: tuple[str, str]
) -> None:
    created(emulator, images, shipped_with(Box=BOX_IF_KEY), KeyName="ops")
    create(cfn, KeyName="")
    box = change_of(settled(cfn), "Box")
    assert (box["Action"], box["Scope"], box["Details"]) == ("Remove", [], [])
    assert box["PhysicalResourceId"].startswith("i-")


# --- what the request may say ----------------------------------------------------------------


def test_a_parameter_left_out_falls_back_to_its_default_as_in_update_stack(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """Asg1DesiredCapacity is 3 live; a change set that omits it sets it to its default 1."""
    cfn.update_stack(
        StackName=STACK,
        UsePreviousTemplate=True,
        Parameters=update_params(Asg1DesiredCapacity="3"),
    )
    emulator.wait_settled(STACK)
    given = [p for p in update_params() if p["ParameterKey"] != "Asg1DesiredCapacity"]
    cfn.create_change_set(
        StackName=STACK, ChangeSetName="guard", UsePreviousTemplate=True, Parameters=given
    )
    shown = settled(cfn)
    values = {p["ParameterKey"]: p["ParameterValue"] for p in shown["Parameters"]}
    assert values["Asg1DesiredCapacity"] == "1"
    assert actions(shown) == {"Asg1": ("Modify", "False")}
    assert (
        "DesiredCapacity",
        "Static",
        "ParameterReference",
        "Asg1DesiredCapacity",
        "Never",
    ) in details(change_of(shown, "Asg1"))


def test_a_new_template_body_is_a_direct_modification(
    stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """TemplateBody instead of UsePreviousTemplate: an edited literal is Static
    DirectModification, with no CausingEntity; an edited name replaces the template."""
    edited = copy.deepcopy(SHIPPED)
    api = edited["Resources"]["ApiLaunchTemplate"]["Properties"]
    api["LaunchTemplateData"]["InstanceType"] = "t3.small"
    edited["Resources"]["MigrationLaunchTemplate"]["Properties"]["LaunchTemplateName"] = "other"
    cfn.create_change_set(
        StackName=STACK,
        ChangeSetName="guard",
        TemplateBody=json.dumps(edited),
        Parameters=update_params(),
    )
    shown = settled(cfn)
    assert actions(shown)["ApiLaunchTemplate"] == ("Modify", "False")
    assert actions(shown)["MigrationLaunchTemplate"] == ("Modify", "True")
    assert details(change_of(shown, "ApiLaunchTemplate")) == {
        ("LaunchTemplateData", "Static", "DirectModification", None, "Never")
    }
    # The replaced template's id moves: the migration group's Ref to it moves too.
    assert (
        "LaunchTemplate",
        "Dynamic",
        "ResourceReference",
        "MigrationLaunchTemplate",
        "Never",
    ) in details(change_of(shown, "MigrationAsg"))
    assert cfn.get_template(StackName=STACK, ChangeSetName="guard")["TemplateBody"] == edited


def test_requests_aws_refuses_are_refused_with_its_words(
    stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    _, new = images
    request = {
        "StackName": STACK,
        "ChangeSetName": "guard",
        "UsePreviousTemplate": True,
        "Parameters": update_params(LcImageId=new),
    }
    refused = [
        ({"ChangeSetName": "no_underscores"}, "Member must satisfy regular expression pattern"),
        ({"TemplateBody": template_body()}, "cannot specify both usePreviousTemplate"),
        ({"StackName": "Nowhere"}, "Stack [Nowhere] does not exist"),
        ({"Parameters": [{"ParameterKey": "Nope", "ParameterValue": "x"}]}, "[Nope] do not exist"),
        ({"ChangeSetType": "CREATE"}, "ChangeSetType CREATE is not emulated"),
    ]
    for changed, message in refused:
        with pytest.raises(ClientError) as exc:
            cfn.create_change_set(**{**request, **changed})
        code, said, status = error(exc)
        assert (code, status) == ("ValidationError", 400)
        assert message in said
    assert cfn.list_change_sets(StackName=STACK)["Summaries"] == []


def test_no_changes_fails_with_aws_reason(stack: str, cfn: Any, images: tuple[str, str]) -> None:
    old, _ = images
    create(cfn, LcImageId=old)
    shown = settled(cfn)
    assert (shown["Status"], shown["ExecutionStatus"]) == ("FAILED", "UNAVAILABLE")
    assert shown["StatusReason"] == NO_CHANGES
    assert shown["Changes"] == []


# --- names, lookups, deletion ------------------------------------------------------------------


def test_a_name_the_stack_has_is_refused_unless_the_request_is_the_same(
    stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """AWS answers a retried identical request with the same change set, and a different
    one under the same name with AlreadyExistsException naming what differs."""
    _, new = images
    first = create(cfn, LcImageId=new)
    assert create(cfn, LcImageId=new)["Id"] == first["Id"]
    with pytest.raises(ClientError) as exc:
        create(cfn, MigrationLcImageId=new)
    assert exc.value.response["Error"]["Code"] == "AlreadyExistsException"
    assert error(exc) == (
        "AlreadyExistsException",
        "ChangeSet guard cannot be created due to a mismatch with existing attribute Parameters",
        400,
    )
    assert isinstance(exc.value, cfn.exceptions.AlreadyExistsException)


def test_an_unknown_change_set_is_not_found_as_aws_says(stack: str, cfn: Any) -> None:
    for call in (cfn.describe_change_set, cfn.delete_change_set):
        with pytest.raises(cfn.exceptions.ChangeSetNotFoundException) as exc:
            call(StackName=STACK, ChangeSetName="nope")
        assert error(exc) == ("ChangeSetNotFound", "ChangeSet [nope] does not exist", 404)
    gone = "arn:aws:cloudformation:us-east-1:123456789012:changeSet/nope/0000"
    with pytest.raises(cfn.exceptions.ChangeSetNotFoundException):
        cfn.describe_change_set(ChangeSetName=gone)
    with pytest.raises(ClientError) as named:
        cfn.describe_change_set(ChangeSetName="nope")
    assert error(named)[0] == "ValidationError"


def test_described_by_arn_alone_and_names_are_per_stack(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    old, new = images
    emulator.create_stack("Stack2", {"LcImageId": old, "MigrationLcImageId": old})
    here = create(cfn, LcImageId=new)
    there = create(cfn, stack="Stack2", MigrationLcImageId=new)
    assert here["Id"] != there["Id"]
    shown = cfn.describe_change_set(ChangeSetName=there["Id"])
    assert (shown["StackName"], shown["ChangeSetName"]) == ("Stack2", "guard")
    assert set(actions(shown)) == {"MigrationLaunchTemplate", "MigrationAsg"}
    assert emulator.change_sets(STACK) == ["guard"] == emulator.change_sets("Stack2")


def test_delete_removes_it(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    _, new = images
    create(cfn, LcImageId=new)
    create(cfn, "other", KeyName="ops")
    assert emulator.change_sets(STACK) == ["guard", "other"]
    listed = cfn.list_change_sets(StackName=STACK)["Summaries"]
    assert [(s["ChangeSetName"], s["Status"]) for s in listed] == [
        ("guard", "CREATE_COMPLETE"),
        ("other", "CREATE_COMPLETE"),
    ]
    cfn.delete_change_set(StackName=STACK, ChangeSetName="guard")
    assert emulator.change_sets(STACK) == ["other"]
    assert [s["ChangeSetName"] for s in cfn.list_change_sets(StackName=STACK)["Summaries"]] == [
        "other"
    ]
    with pytest.raises(cfn.exceptions.ChangeSetNotFoundException):
        cfn.describe_change_set(StackName=STACK, ChangeSetName="guard")
    create(cfn, MigrationLcImageId=new)  # the name is free again, for any request


def test_a_deleted_stack_takes_its_change_sets_with_it(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    _, new = images
    arn = create(cfn, LcImageId=new)["Id"]
    cfn.delete_stack(StackName=STACK)
    with pytest.raises(cfn.exceptions.ChangeSetNotFoundException):
        cfn.describe_change_set(ChangeSetName=arn)


# --- lifecycle ---------------------------------------------------------------------------------


@pytest.fixture
def slow(emulator: Emulator) -> Iterator[Emulator]:
    """Change sets take long enough to be seen in each status."""
    emulator.set_change_set_seconds(0.6)
    yield emulator
    emulator.set_change_set_seconds(0.0)


def test_a_caller_must_poll_until_the_change_set_is_complete(
    slow: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """CREATE_PENDING, then CREATE_IN_PROGRESS, then CREATE_COMPLETE; no Changes and no
    execution until then, and it cannot be deleted while being created."""
    _, new = images
    create(cfn, LcImageId=new)
    first = cfn.describe_change_set(StackName=STACK, ChangeSetName="guard")
    assert (first["Status"], first["ExecutionStatus"]) == ("CREATE_PENDING", "UNAVAILABLE")
    assert first["Changes"] == []
    with pytest.raises(cfn.exceptions.InvalidChangeSetStatusException):
        cfn.delete_change_set(StackName=STACK, ChangeSetName="guard")
    seen = [first["Status"]]

    def complete() -> bool | None:
        status = cfn.describe_change_set(StackName=STACK, ChangeSetName="guard")["Status"]
        if status != seen[-1]:
            seen.append(status)
        return True if status == "CREATE_COMPLETE" else None

    wait_for(complete, timeout=10.0, what="the change set to complete")
    assert seen == ["CREATE_PENDING", "CREATE_IN_PROGRESS", "CREATE_COMPLETE"]
    assert set(actions(settled(cfn))) == {"ApiLaunchTemplate", "Asg1"}
    cfn.delete_change_set(StackName=STACK, ChangeSetName="guard")


def test_an_update_of_the_stack_makes_it_obsolete(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    _, new = images
    create(cfn, LcImageId=new)
    cfn.update_stack(
        StackName=STACK, UsePreviousTemplate=True, Parameters=update_params(KeyName="ops")
    )
    emulator.wait_settled(STACK)
    assert settled(cfn)["ExecutionStatus"] == "OBSOLETE"


def test_a_busy_stack_refuses_a_change_set(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    _, new = images
    emulator.set_stack_status(STACK, "UPDATE_IN_PROGRESS")
    with pytest.raises(ClientError) as exc:
        create(cfn, LcImageId=new)
    expected = f"Stack:{stack} is in UPDATE_IN_PROGRESS state and can not be updated."
    assert error(exc) == ("ValidationError", expected, 400)


def test_the_stack_is_untouched_by_change_sets(
    slow: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """Status, parameters, LastUpdatedTime, events and template stay as they were."""
    _, new = images

    def seen() -> tuple[Any, ...]:
        shown = describe(cfn)
        template = cfn.get_template(StackName=STACK)["TemplateBody"]
        return (
            shown["StackStatus"],
            live(cfn),
            shown.get("LastUpdatedTime"),
            stack_events(cfn),
            template,
        )

    before = seen()
    create(cfn, LcImageId=new)
    create(cfn, "phase1", MigrationLcImageId=new, MigrationDesiredCapacity="1")
    assert seen() == before
    settled(cfn)
    settled(cfn, "phase1")
    cfn.delete_change_set(StackName=STACK, ChangeSetName="guard")
    assert seen() == before


def test_changes_are_paged_by_next_token(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    _, new = images
    emulator.change_set_page_size = 1
    create(cfn, LcImageId=new, MigrationLcImageId=new)
    first = cfn.describe_change_set(StackName=STACK, ChangeSetName="guard")
    assert len(first["Changes"]) == 1 and "NextToken" in first
    assert len(settled(cfn)["Changes"]) == 4
    with pytest.raises(ClientError) as exc:
        cfn.describe_change_set(StackName=STACK, ChangeSetName="guard", NextToken="bogus")
    assert error(exc)[0] == "ValidationError"


def test_get_template_answers_as_aws_for_the_stack_and_its_change_sets(
    stack: str, cfn: Any
) -> None:
    shown = cfn.get_template(StackName=STACK)
    assert shown["TemplateBody"] == SHIPPED  # boto3 decodes a JSON body
    assert shown["StagesAvailable"] == ["Original", "Processed"]
    assert cfn.get_template(StackName=STACK, TemplateStage="Processed")["TemplateBody"] == SHIPPED
    with pytest.raises(ClientError) as exc:
        cfn.get_template(StackName="Nowhere")
    assert error(exc) == ("ValidationError", "Stack with id Nowhere does not exist", 400)


def test_execute_change_set_is_refused_clearly(
    stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    _, new = images
    create(cfn, LcImageId=new)
    with pytest.raises(ClientError) as exc:
        cfn.execute_change_set(StackName=STACK, ChangeSetName="guard")
    code, message, _ = error(exc)
    assert code == "ValidationError" and "UpdateStack" in message
    assert describe(cfn)["StackStatus"] == "CREATE_COMPLETE"


# --- requests and IAM --------------------------------------------------------------------------


def test_change_set_requests_are_counted(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    _, new = images
    before = emulator.requests()
    create(cfn, LcImageId=new)
    settled(cfn)
    cfn.delete_change_set(StackName=STACK, ChangeSetName="guard")
    after = emulator.requests()
    for action, count in (("CreateChangeSet", 1), ("DescribeChangeSet", 1), ("DeleteChangeSet", 1)):
        key = ("cloudformation", action)
        assert after.get(key, 0) - before.get(key, 0) == count


GUARD_ACTIONS = [
    "cloudformation:CreateChangeSet",
    "cloudformation:DescribeChangeSet",
    "cloudformation:DeleteChangeSet",
    "cloudformation:ListChangeSets",
    "cloudformation:GetTemplate",
]


def user_client(emulator: Emulator, name: str, actions: list[str], resource: str) -> Any:
    """A CloudFormation client for a new IAM user allowed `actions` on `resource`."""
    iam = emulator.client("iam")
    iam.create_user(UserName=name)
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resource}],
    }
    iam.put_user_policy(UserName=name, PolicyName="guard", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return boto3.client(
        "cloudformation",
        region_name=emulator.region,
        endpoint_url=emulator.endpoint_url,
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )


@pytest.mark.parametrize("missing", GUARD_ACTIONS)
def test_each_change_set_action_is_checked_by_its_iam_name(
    emulator: Emulator, stack: str, images: tuple[str, str], missing: str
) -> None:
    """Under enforced IAM, a user without one of the guard's rights is refused that call,
    AccessDenied naming it, and allowed the others."""
    _, new = images
    cfn = user_client(emulator, "guard", [a for a in GUARD_ACTIONS if a != missing], stack)
    emulator.enforce_iam()
    calls = {
        "cloudformation:CreateChangeSet": lambda: create(cfn, LcImageId=new),
        "cloudformation:DescribeChangeSet": lambda: cfn.describe_change_set(
            StackName=STACK, ChangeSetName="guard"
        ),
        "cloudformation:ListChangeSets": lambda: cfn.list_change_sets(StackName=STACK),
        "cloudformation:GetTemplate": lambda: cfn.get_template(StackName=STACK),
        "cloudformation:DeleteChangeSet": lambda: cfn.delete_change_set(
            StackName=STACK, ChangeSetName="guard"
        ),
    }
    if missing == "cloudformation:CreateChangeSet":
        create(emulator.client("cloudformation"), LcImageId=new)  # the administrator's
    else:
        calls.pop("cloudformation:CreateChangeSet")()
    with pytest.raises(ClientError) as exc:
        calls.pop(missing)()
    code, message, status = error(exc)
    assert (code, status) == ("AccessDenied", 403)
    assert missing in message
    for call in calls.values():  # the rest, DeleteChangeSet last
        call()


def test_change_sets_are_authorised_on_the_stack_arn(
    emulator: Emulator, stack: str, images: tuple[str, str]
) -> None:
    """A policy for other stacks' ARNs is refused, as it would be for UpdateStack."""
    _, new = images
    other = stack.replace(f"stack/{STACK}/", "stack/Other/")
    cfn = user_client(emulator, "elsewhere", GUARD_ACTIONS, other)
    emulator.enforce_iam()
    with pytest.raises(ClientError) as exc:
        create(cfn, LcImageId=new)
    assert error(exc)[0] == "AccessDenied"


# --- the behaviour table, row by row -----------------------------------------------------------

# The reference's label to what a change set says (RequiresRecreation, Replacement).
LABELS = {
    "Replacement": ("Always", "True"),
    "No interruption": ("Never", "False"),
    "Some interruptions": ("Never", "False"),
    "Conditional": ("Conditionally", "Conditional"),
}
ROWS = [
    (kind, prop, label)
    for kind, props in behaviours.UPDATE_REQUIRES.items()
    for prop, label in props.items()
]
PSEUDO = {"AWS::Region": "us-east-1", "AWS::StackName": STACK}


def one_change(kind: str, prop: str) -> changes.ResourceChange:
    """A change set of one resource whose one property moves with a parameter."""
    template = {
        "Parameters": {"Value": {"Type": "String"}},
        "Resources": {"Res": {"Type": kind, "Properties": {prop: {"Ref": "Value"}}}},
    }
    before = intrinsics.Evaluation(template, {"Value": "a"}, PSEUDO, [])
    after = intrinsics.Evaluation(template, {"Value": "b"}, PSEUDO, [])
    (change,) = changes.compute(before, after, {"Res": "res-1"})
    return change


@pytest.mark.parametrize(("kind", "prop", "label"), ROWS)
def test_each_row_of_the_behaviour_table_gives_its_replacement(
    kind: str, prop: str, label: str
) -> None:
    recreation, replacement = LABELS[label]
    change = one_change(kind, prop)
    assert (change.action, change.replacement) == ("Modify", replacement)
    assert {d.recreation for d in change.details} == {recreation}
    assert change.scope == (["Tags"] if prop == "Tags" else ["Properties"])


@pytest.mark.parametrize(
    ("kind", "prop", "replacement"),
    [  # the rows the shipped template and the guard's tests lean on, said independently
        ("AWS::EC2::LaunchTemplate", "LaunchTemplateData", "False"),
        ("AWS::EC2::LaunchTemplate", "LaunchTemplateName", "True"),
        ("AWS::AutoScaling::AutoScalingGroup", "DesiredCapacity", "False"),
        ("AWS::AutoScaling::AutoScalingGroup", "MinSize", "False"),
        ("AWS::AutoScaling::AutoScalingGroup", "MaxSize", "False"),
        ("AWS::AutoScaling::AutoScalingGroup", "LaunchTemplate", "False"),
        ("AWS::AutoScaling::AutoScalingGroup", "LoadBalancerNames", "False"),
        ("AWS::AutoScaling::AutoScalingGroup", "Tags", "False"),
        ("AWS::AutoScaling::AutoScalingGroup", "AutoScalingGroupName", "True"),
        ("AWS::ElasticLoadBalancing::LoadBalancer", "HealthCheck", "False"),
        ("AWS::ElasticLoadBalancing::LoadBalancer", "LoadBalancerName", "True"),
        ("AWS::ElasticLoadBalancing::LoadBalancer", "Scheme", "True"),
        ("AWS::EC2::Instance", "SubnetId", "True"),
        ("AWS::EC2::Instance", "SecurityGroupIds", "False"),
        ("AWS::EC2::Instance", "MetadataOptions", "Conditional"),  # not in the table
        ("AWS::Lambda::Function", "Code", "Conditional"),  # nor is the type
    ],
)
def test_documented_rows_hold(kind: str, prop: str, replacement: str) -> None:
    assert one_change(kind, prop).replacement == replacement
