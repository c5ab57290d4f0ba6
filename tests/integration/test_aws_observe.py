"""observe(): what the planner learns about a stack, and what it costs in requests."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto.cloudformation.models import cloudformation_backends

from reconciler.aws import observe
from reconciler.aws.act import send_update
from reconciler.aws.clients import Clients
from reconciler.aws.observe import health
from reconciler.embedded import Emulator
from reconciler.model import StackUpdate
from reconciler.spec import Spec
from tests.integration.conftest import PARAMETERS, REGION, Stack

Requests = list[tuple[str, str, str]]


def test_observes_parameters_status_capacity_instances_and_health(
    stack: Stack, clients: Clients
) -> None:
    """Every template parameter with its live value, the API group's capacity, and each
    instance with its AMI, lifecycle state and classic-ELB health."""
    seen = observe(clients, stack.spec(), stack.new_image)

    assert seen.problem is None
    assert seen.stack is not None
    assert seen.stack.status == "CREATE_COMPLETE"
    assert dict(seen.stack.parameters) == stack.parameters
    assert seen.stack.last_updated is None  # never updated
    assert seen.api_desired_capacity == 1
    assert seen.api_instances is not None
    assert len(seen.api_instances) == 1
    (instance,) = seen.api_instances
    assert instance.image == stack.old_image
    assert instance.lifecycle == "InService"
    assert instance.healthy is True
    assert seen.migration_record is None  # check is none by default


def test_missing_stack_is_observed_as_none(clients: Clients) -> None:
    """A stack that does not exist is Observed(stack=None), not an exception."""
    sp = Spec.model_validate({"stackName": "Nope", "region": REGION, "image": "ami-12345678"})
    seen = observe(clients, sp, "ami-12345678")
    assert seen.stack is None
    assert seen.problem is None


def test_wrong_resource_name_is_a_problem_naming_the_field_and_the_groups(
    stack: Stack, clients: Clients
) -> None:
    """A resourceNames entry the stack lacks is a problem that says what to fix."""
    sp = stack.spec(resourceNames={"apiGroup": "ApiGroup"})
    seen = observe(clients, sp, stack.new_image)
    assert seen.stack is not None
    assert seen.problem is not None
    assert "resourceNames.apiGroup 'ApiGroup'" in seen.problem
    assert "Asg1" in seen.problem and "MigrationAsg" in seen.problem
    assert seen.api_instances is None


def test_after_an_update_sees_new_group_instances_and_last_update_time(
    stack: Stack, clients: Clients
) -> None:
    """The group is looked up by logical id, so its replacement (new physical name) is
    found; the last update time comes from the stack event when moto omits it."""
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    params = tuple((k, stack.new_image if k == "LcImageId" else None) for k in stack.parameters)
    send_update(clients, stack.spec(), StackUpdate("switch", params, "rc-t-1"))

    seen = observe(clients, stack.spec(), stack.new_image)

    assert seen.stack is not None and seen.stack.status == "UPDATE_COMPLETE"
    assert seen.stack.last_updated is not None and seen.stack.last_updated >= before
    assert seen.stack.last_updated.tzinfo == dt.UTC
    assert seen.api_instances is not None
    assert [i.image for i in seen.api_instances] == [stack.new_image]


def test_a_settled_stack_costs_five_requests(
    stack: Stack, clients: Clients, requests: Requests
) -> None:
    """Budget: stack, resources, group, instances, load-balancer health; no events."""
    observe(clients, stack.spec(), stack.new_image)
    assert [op for _, op, _ in requests] == [
        "DescribeStacks",
        "DescribeStackResources",
        "DescribeAutoScalingGroups",
        "DescribeInstances",
        "DescribeInstanceHealth",
    ]


def test_a_busy_stack_reads_no_groups(stack: Stack, clients: Clients, requests: Requests) -> None:
    """While an update is in progress nothing would be acted on: DescribeStacks only, and
    DescribeStackEvents because moto gives no LastUpdatedTime (real AWS does)."""
    backend = cloudformation_backends["123456789012"][REGION]
    moto_stack = next(s for s in backend.stacks.values() if s.name == stack.name)
    moto_stack.status = "UPDATE_IN_PROGRESS"

    seen = observe(clients, stack.spec(), stack.new_image)

    assert seen.stack is not None and seen.stack.status == "UPDATE_IN_PROGRESS"
    assert seen.api_instances is None and seen.api_desired_capacity is None
    assert [op for _, op, _ in requests] == ["DescribeStacks", "DescribeStackEvents"]


def test_reads_the_record_while_the_api_image_differs(stack: Stack, clients: Clients) -> None:
    """With a check configured and the API not yet on the image, the record is read."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="deploy-status")
    body = {"image": stack.new_image, "status": "running", "updatedAt": "2026-11-26T10:02:00Z"}
    s3.put_object(
        Bucket="deploy-status",
        Key=f"biglearn-api/{stack.name}/{stack.new_image}.json",
        Body=json.dumps(body).encode(),
    )
    sp = stack.spec(migration={"check": "s3", "location": "s3://deploy-status/biglearn-api"})

    seen = observe(clients, sp, stack.new_image)

    assert seen.migration_record is not None
    assert seen.migration_record.status == "running"
    # Once the API runs the image, the record is no longer read (one call saved).
    assert observe(clients, sp, stack.old_image).migration_record is None


def test_an_invalid_record_is_a_warning_not_a_block(stack: Stack, clients: Clients) -> None:
    """A record that cannot count is observed as absent and reported through on_warning."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="deploy-status")
    s3.put_object(Bucket="deploy-status", Key=f"p/{stack.name}/{stack.new_image}.json", Body=b"{")
    sp = stack.spec(migration={"check": "s3", "location": "s3://deploy-status/p"})
    warnings: list[str] = []

    seen = observe(clients, sp, stack.new_image, on_warning=warnings.append)

    assert seen.migration_record is None
    assert seen.problem is None
    assert seen.api_instances is not None
    assert len(warnings) == 1 and f"s3://deploy-status/p/{stack.name}/" in warnings[0]


def test_second_stack_is_observed_independently(
    make_stack: Callable[..., Stack], clients: Clients
) -> None:
    """Two stacks in one account: each observation reads its own groups."""
    one, two = make_stack("One"), make_stack("Two", Asg1DesiredCapacity="2")
    assert observe(clients, one.spec(), one.new_image).api_desired_capacity == 1
    seen = observe(clients, two.spec(), two.new_image)
    assert seen.api_desired_capacity == 2
    assert seen.api_instances is not None and len(seen.api_instances) == 2


def _bare_group(stack: Stack, **lb: Any) -> tuple[Any, list[str]]:
    """An Auto Scaling group made outside CloudFormation, with the given load balancers."""
    ec2 = boto3.client("ec2", region_name=REGION)
    template = ec2.create_launch_template(
        LaunchTemplateName="bare",
        LaunchTemplateData={"ImageId": stack.old_image, "InstanceType": "t3.micro"},
    )["LaunchTemplate"]["LaunchTemplateId"]
    asg = boto3.client("autoscaling", region_name=REGION)
    asg.create_auto_scaling_group(
        AutoScalingGroupName="bare",
        LaunchTemplate={"LaunchTemplateId": template},
        MinSize=0,
        MaxSize=4,
        DesiredCapacity=2,
        AvailabilityZones=[f"{REGION}a"],
        **lb,
    )
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["bare"])["AutoScalingGroups"][0]
    return group, [i["InstanceId"] for i in group["Instances"]]


def test_target_group_health_counts_and_unregistered_is_unhealthy(
    stack: Stack, clients: Clients
) -> None:
    """With target groups, healthy means "healthy" in each; an instance not registered in
    one of them is not healthy."""
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    elbv2 = boto3.client("elbv2", region_name=REGION)
    arn = elbv2.create_target_group(Name="tg", Protocol="HTTP", Port=80, VpcId=vpc)["TargetGroups"][
        0
    ]["TargetGroupArn"]
    group, ids = _bare_group(stack)
    elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": ids[0]}])
    group["TargetGroupARNs"] = [arn]  # as if the group were attached to it

    verdicts = health(clients, stack.spec(), group, ids)

    assert verdicts is not None
    assert verdicts[ids[0]] is True
    assert verdicts[ids[1]] is False


def test_a_group_without_load_balancer_has_no_health(stack: Stack, clients: Clients) -> None:
    """No load balancer: health is None (unknown), not False."""
    group, ids = _bare_group(stack)
    assert health(clients, stack.spec(), group, ids) is None


# --- why a stack rolled back ------------------------------------------------------------


def _moto_stack(stack: Stack) -> Any:
    backend = cloudformation_backends["123456789012"][REGION]
    return next(s for s in backend.stacks.values() if s.name == stack.name)


def test_rollback_reason_comes_from_the_events_when_describe_stacks_has_none(
    stack: Stack, clients: Clients, requests: Requests
) -> None:
    """UPDATE_ROLLBACK_COMPLETE without StackStatusReason: the reason of the newest
    UPDATE_ROLLBACK_IN_PROGRESS event; one page of events serves it and the last update time
    (moto gives no LastUpdatedTime), so DescribeStackEvents is sent once."""
    moto_stack = _moto_stack(stack)
    moto_stack._add_stack_event("UPDATE_IN_PROGRESS", resource_status_reason="User Initiated")
    moto_stack._add_stack_event("UPDATE_ROLLBACK_IN_PROGRESS", "Asg1: instances failed")
    moto_stack._add_stack_event("UPDATE_ROLLBACK_COMPLETE")
    moto_stack.status = "UPDATE_ROLLBACK_COMPLETE"

    seen = observe(clients, stack.spec(), stack.new_image)

    assert seen.stack is not None
    assert seen.stack.status_reason == "Asg1: instances failed"
    assert seen.stack.last_updated is not None
    assert [op for _, op, _ in requests].count("DescribeStackEvents") == 1


def test_a_failed_rollback_gives_the_reason_of_its_newest_failure(
    stack: Stack, clients: Clients
) -> None:
    """UPDATE_ROLLBACK_FAILED: a *_FAILED event newer than the rollback says what a person
    must now fix, so its reason is the one reported."""
    moto_stack = _moto_stack(stack)
    moto_stack._add_stack_event("UPDATE_IN_PROGRESS", resource_status_reason="User Initiated")
    moto_stack._add_stack_event("UPDATE_ROLLBACK_IN_PROGRESS", "Asg1: instances failed")
    moto_stack._add_stack_event("UPDATE_ROLLBACK_FAILED", "Asg1: cannot restore capacity")
    moto_stack.status = "UPDATE_ROLLBACK_FAILED"

    seen = observe(clients, stack.spec(), stack.new_image)

    assert seen.stack is not None
    assert seen.stack.status_reason == "Asg1: cannot restore capacity"


def test_a_reason_from_describe_stacks_is_kept_as_is(stack: Stack, clients: Clients) -> None:
    """When DescribeStacks gives StackStatusReason, it is the reason; events do not override it."""
    moto_stack = _moto_stack(stack)
    moto_stack._add_stack_event("UPDATE_ROLLBACK_IN_PROGRESS", "from the events")
    moto_stack.status = "UPDATE_ROLLBACK_COMPLETE"
    moto_stack.status_reason = "from DescribeStacks"

    seen = observe(clients, stack.spec(), stack.new_image)

    assert seen.stack is not None and seen.stack.status_reason == "from DescribeStacks"


@pytest.fixture
def emulated() -> Iterator[tuple[Emulator, Stack]]:
    """The embedded emulator (its updates roll back on request, moto's do not) with Stack1
    made from the shipped template."""
    with Emulator(update_seconds=0.3) as emulator:
        old, new = emulator.register_image("old"), emulator.register_image("new")
        params = {**PARAMETERS, "LcImageId": old, "MigrationLcImageId": old}
        emulator.create_stack("Stack1", params)
        yield emulator, Stack("Stack1", old, new, params)


def _switch(emulator: Emulator, stack: Stack, clients: Clients) -> None:
    params = tuple((k, stack.new_image if k == "LcImageId" else None) for k in stack.parameters)
    send_update(clients, stack.spec(), StackUpdate("switch", params, "rc-t-2"))
    emulator.wait_settled(stack.name)


def test_the_reason_of_a_real_rollback_reaches_the_status(
    emulated: tuple[Emulator, Stack], requests: Requests
) -> None:
    """An update that rolls back (emulator): its UPDATE_ROLLBACK_IN_PROGRESS reason becomes
    Observed.stack.status_reason, for "switch update rolled back: <reason>"; LastUpdatedTime
    is given, so the one DescribeStackEvents is for the reason only."""
    emulator, stack = emulated
    clients = Clients(emulator.endpoint_url, lambda *call: requests.append(call), 2)
    emulator.fail_next_update(stack.name, "Asg1: instance i-0abc failed to signal")
    _switch(emulator, stack, clients)
    requests.clear()

    seen = observe(clients, stack.spec(), stack.new_image)

    assert seen.stack is not None and seen.stack.status == "UPDATE_ROLLBACK_COMPLETE"
    assert seen.stack.status_reason == "Asg1: instance i-0abc failed to signal"
    assert seen.stack.last_updated is not None
    assert [op for _, op, _ in requests].count("DescribeStackEvents") == 1


def test_an_updated_stack_with_last_updated_time_reads_no_events(
    emulated: tuple[Emulator, Stack], requests: Requests
) -> None:
    """Budget: with LastUpdatedTime from DescribeStacks and no rollback, no DescribeStackEvents."""
    emulator, stack = emulated
    clients = Clients(emulator.endpoint_url, lambda *call: requests.append(call), 2)
    _switch(emulator, stack, clients)
    requests.clear()

    seen = observe(clients, stack.spec(), stack.new_image)

    assert seen.stack is not None and seen.stack.status == "UPDATE_COMPLETE"
    assert seen.stack.last_updated is not None and seen.stack.status_reason is None
    assert "DescribeStackEvents" not in [op for _, op, _ in requests]
