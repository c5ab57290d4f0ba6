"""What the emulator adds around updates: the stack's instances, faults, the migration worker."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from reconciler.aws.records import parse_record
from reconciler.embedded import Emulator, MigrationWorker, wait_for
from tests.embedded.embeddedkit import STACK, update_params


def _group_images(emulator: Emulator, logical_id: str) -> tuple[str, list[str], list[str]]:
    """(group name, instance ids, their images) of one of the stack's groups."""
    resource = emulator.client("cloudformation").describe_stack_resource(
        StackName=STACK, LogicalResourceId=logical_id
    )["StackResourceDetail"]["PhysicalResourceId"]
    group = emulator.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[resource]
    )["AutoScalingGroups"][0]
    ids = [i["InstanceId"] for i in group["Instances"]]
    reservations = emulator.client("ec2").describe_instances(InstanceIds=ids)["Reservations"]
    return resource, ids, [i["ImageId"] for r in reservations for i in r["Instances"]]


def _update(cfn: Any, emulator: Emulator, **changes: str) -> str:
    cfn.update_stack(StackName=STACK, UsePreviousTemplate=True, Parameters=update_params(**changes))
    return emulator.wait_settled(STACK)


def test_an_ami_only_update_replaces_the_api_instances_behind_the_load_balancer(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """Changing LcImageId alone: Asg1 runs the new image and its instances are InService."""
    old, new = images
    before, _, old_images = _group_images(emulator, "Asg1")
    assert old_images == [old]
    assert _update(cfn, emulator, LcImageId=new) == "UPDATE_COMPLETE"
    after, ids, new_images = _group_images(emulator, "Asg1")
    assert after != before  # moto recreates the group: names must be looked up each time
    assert new_images == [new]
    balancer = emulator.client("cloudformation").describe_stack_resource(
        StackName=STACK, LogicalResourceId="ApiLoadBalancer"
    )["StackResourceDetail"]["PhysicalResourceId"]
    health = emulator.client("elb").describe_instance_health(LoadBalancerName=balancer)
    assert {(s["InstanceId"], s["State"]) for s in health["InstanceStates"]} == {
        (ids[0], "InService")
    }


def _cloudformation_tags(emulator: Emulator) -> dict[str, tuple[str, str]]:
    """Group name -> (stack-name tag, logical-id tag) for every tagged group."""
    groups = emulator.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    found = {}
    for g in groups:
        tags = {t["Key"]: t["Value"] for t in g.get("Tags", [])}
        if "aws:cloudformation:logical-id" in tags:
            found[g["AutoScalingGroupName"]] = (
                tags["aws:cloudformation:stack-name"],
                tags["aws:cloudformation:logical-id"],
            )
    return found


def test_groups_carry_cloudformation_tags_after_create_and_after_a_replacing_update(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """As on AWS: a group names its stack and logical id, also the one an update recreated."""
    before, _, _ = _group_images(emulator, "Asg1")
    migration, _, _ = _group_images(emulator, "MigrationAsg")
    assert _cloudformation_tags(emulator) == {
        before: (STACK, "Asg1"),
        migration: (STACK, "MigrationAsg"),
    }
    assert _update(cfn, emulator, LcImageId=images[1]) == "UPDATE_COMPLETE"
    after, _, _ = _group_images(emulator, "Asg1")
    assert after != before
    assert _cloudformation_tags(emulator)[after] == (STACK, "Asg1")


def test_throttling_answers_rate_exceeded_on_the_chosen_service_only(
    emulator: Emulator, stack: str
) -> None:
    """faults.throttle(1.0): CloudFormation says Throttling/Rate exceeded; S3 is untouched."""
    emulator.faults.throttle(1.0, service="cloudformation")
    with pytest.raises(ClientError) as exc:
        emulator.client("cloudformation", attempts=1).describe_stacks(StackName=STACK)
    error = exc.value.response["Error"]
    assert (error["Code"], error["Message"]) == ("Throttling", "Rate exceeded")
    emulator.client("s3").list_buckets()
    emulator.faults.clear()
    emulator.client("cloudformation", attempts=1).describe_stacks(StackName=STACK)


def test_throttling_a_fraction_fails_some_calls_and_not_others(
    emulator: Emulator, stack: str
) -> None:
    """faults.throttle(0.5): about half the calls are throttled, each counted in `injected`."""
    emulator.faults.throttle(0.5)
    cfn = emulator.client("cloudformation", attempts=1)
    throttled = 0
    for _ in range(20):
        try:
            cfn.describe_stacks(StackName=STACK)
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "Throttling"
            throttled += 1
    assert 0 < throttled < 20
    assert emulator.faults.injected == throttled


def test_migration_worker_writes_running_then_succeeded_to_s3(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """Phase 1 starts a migration instance; its record goes running k/N -> succeeded N/N."""
    _, new = images
    emulator.ensure_bucket("deploy-status")
    s3 = emulator.client("s3")
    key = f"biglearn-api/{STACK}/{new}.json"
    seen: list[str] = []
    with MigrationWorker(
        emulator, STACK, "s3://deploy-status/biglearn-api", steps=2, step_seconds=0.05
    ) as worker:
        _update(cfn, emulator, MigrationLcImageId=new, MigrationDesiredCapacity="1")
        run = worker.wait_for_run(new)
        seen.append(json.loads(s3.get_object(Bucket="deploy-status", Key=key)["Body"].read()))
    assert run.status == "succeeded"
    record: Any = seen[0]
    assert record["image"] == new
    assert (record["status"], record["progress"]) == ("succeeded", "2/2")
    assert record["instanceId"] == run.instance_id
    assert record["startedAt"].endswith("Z") and record["updatedAt"].endswith("Z")
    assert record["startedAt"] <= record["updatedAt"]


def test_migration_worker_marks_the_records_of_irreversible_images(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """rollbackSafe: false only for the images it is told of; the key is absent otherwise."""
    old, new = images
    emulator.ensure_bucket("deploy-status")
    s3 = emulator.client("s3")
    location = "s3://deploy-status/biglearn-api"
    with MigrationWorker(
        emulator, STACK, location, steps=1, step_seconds=0.01, irreversible_images=[new]
    ) as worker:
        _update(cfn, emulator, MigrationLcImageId=new, MigrationDesiredCapacity="1")
        worker.wait_for_run(new)
        _update(cfn, emulator, MigrationLcImageId=old)
        worker.wait_for_run(old)

    def record(image: str) -> Any:
        key = f"biglearn-api/{STACK}/{image}.json"
        return json.loads(s3.get_object(Bucket="deploy-status", Key=key)["Body"].read())

    assert record(new)["rollbackSafe"] is False
    assert "rollbackSafe" not in record(old)
    assert parse_record(json.dumps(record(new)), new, "here").rollback_safe is False


def test_migration_worker_reports_progress_while_running(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """Before the outcome, the record says running with a k/N progress."""
    _, new = images
    ssm = emulator.client("ssm")
    name = f"/deploy/biglearn/{STACK}/{new}"
    with MigrationWorker(emulator, STACK, "ssm:/deploy/biglearn", steps=3, step_seconds=5.0):
        _update(cfn, emulator, MigrationLcImageId=new, MigrationDesiredCapacity="1")

        def running() -> Any:
            try:
                value = ssm.get_parameter(Name=name)["Parameter"]["Value"]
            except ClientError:
                return None
            return json.loads(value)

        record = wait_for(running, timeout=5.0, what="a running record")
    assert (record["status"], record["progress"]) == ("running", "0/3")


def test_migration_worker_writes_failed_to_ssm_for_a_failing_image(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """An image in fail_images ends its record as failed, at SSM /PATH/STACK/IMAGE."""
    _, new = images
    ssm = emulator.client("ssm")
    with MigrationWorker(
        emulator, STACK, "ssm:/deploy/biglearn", steps=4, step_seconds=0.02, fail_images={new}
    ) as worker:
        _update(cfn, emulator, MigrationLcImageId=new, MigrationDesiredCapacity="1")
        run = worker.wait_for_run(new)
    record = json.loads(
        ssm.get_parameter(Name=f"/deploy/biglearn/{STACK}/{new}")["Parameter"]["Value"]
    )
    assert run.status == "failed"
    assert (record["status"], record["progress"]) == ("failed", "2/4")


def test_a_new_migration_instance_for_the_same_image_runs_again(
    emulator: Emulator, stack: str, cfn: Any, images: tuple[str, str]
) -> None:
    """Retry: capacity 0 then 1 again gives a new instance, and the migrations run again."""
    _, new = images
    emulator.ensure_bucket("deploy-status")
    with MigrationWorker(
        emulator, STACK, "s3://deploy-status", steps=1, step_seconds=0.01
    ) as worker:
        _update(cfn, emulator, MigrationLcImageId=new, MigrationDesiredCapacity="1")
        first = worker.wait_for_run(new)
        _update(cfn, emulator, MigrationDesiredCapacity="0")
        _update(cfn, emulator, MigrationDesiredCapacity="1")
        second = worker.wait_for_run(new, count=2)
    assert first.instance_id != second.instance_id
    assert (first.status, second.status) == ("succeeded", "succeeded")


def test_no_migration_runs_while_the_group_is_empty(emulator: Emulator, stack: str) -> None:
    """MigrationDesiredCapacity 0 (the idle stack): the worker writes nothing."""
    emulator.ensure_bucket("deploy-status")
    with MigrationWorker(emulator, STACK, "s3://deploy-status", poll_seconds=0.01) as worker:
        emulator.client("cloudformation").describe_stacks(StackName=STACK)
    assert worker.runs == ()
    listing = emulator.client("s3").list_objects_v2(Bucket="deploy-status")
    assert listing.get("KeyCount", 0) == 0


def test_group_paging_goes_on_when_the_group_named_by_the_token_is_gone(
    emulator: Emulator,
) -> None:
    """moto resumed at the token group's index and answered 500 once that group was
    replaced between pages; the fleet crash sweep met it when a switch landed mid-read."""
    asg = emulator.client("autoscaling", attempts=1)
    ec2 = emulator.client("ec2", attempts=1)
    image = emulator.register_image("paging")
    template = ec2.create_launch_template(
        LaunchTemplateName="paging", LaunchTemplateData={"ImageId": image}
    )["LaunchTemplate"]["LaunchTemplateId"]
    for name in ("g-a", "g-b", "g-c", "g-d"):
        asg.create_auto_scaling_group(
            AutoScalingGroupName=name,
            LaunchTemplate={"LaunchTemplateId": template, "Version": "$Latest"},
            MinSize=0,
            MaxSize=1,
            AvailabilityZones=[f"{emulator.region}a"],
        )
    first = asg.describe_auto_scaling_groups(MaxRecords=2)
    assert [g["AutoScalingGroupName"] for g in first["AutoScalingGroups"]] == ["g-a", "g-b"]
    asg.delete_auto_scaling_group(AutoScalingGroupName="g-b", ForceDelete=True)
    rest = asg.describe_auto_scaling_groups(MaxRecords=2, NextToken=first["NextToken"])
    assert [g["AutoScalingGroupName"] for g in rest["AutoScalingGroups"]] == ["g-c", "g-d"]
    assert "NextToken" not in rest
