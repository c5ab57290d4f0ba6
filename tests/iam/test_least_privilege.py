"""docs/iam-policy.json suffices for a rollout, and a missing right shows, under enforced IAM.

The emulator enforces IAM (`Emulator.enforce_iam`) after the world is set up; the daemon's
Engine then runs with the keys of an IAM user holding only the policy under test, while the
migration instance (MigrationWorker) uses the emulator's administrator keys.

How the shipped policy is fitted to moto (`for_the_emulator`), keeping its actions exact:
- placeholders become this test's names (account, stack prefix, bucket, prefix, ...);
- moto authorises the query/JSON services against the resource `*` (it never builds an
  ARN for them), so a statement with a resource ARN would match nothing there: each such
  statement also gets `*`. Two checks do see real resources and keep the policy's ARN only:
  S3 (moto builds `arn:aws:s3:::bucket/key`), sts:AssumeRole (on the role's ARN) and
  UpdateStack (the emulator's WSGI layer authorises it on the stack's ARN), so those prove
  the policy's ARN patterns.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import itertools
import json
import pathlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from reconciler import aws, catalog, engine, planner, spec
from reconciler.embedded import Emulator, MigrationWorker
from reconciler.metrics import Metrics
from reconciler.model import Phase
from reconciler.store import Store

POLICY_FILE = pathlib.Path(__file__).parents[2] / "docs" / "iam-policy.json"
REGION = "us-east-1"
STACK_PREFIX = "biglearn-"
STACK = f"{STACK_PREFIX}api"
NAME = "biglearn-api"
BUCKET = "deploy-status"
PREFIX = "records"
LOCATION = f"s3://{BUCKET}/{PREFIX}"
UPDATE_SECONDS = 0.2  # long enough to see *_IN_PROGRESS, short for the suite
REVISION = "e" * 40
# Measured (moto 5.2.5): these services answer without any IAM check, so the policy's
# SSM and DynamoDB rights are not proven here (and TransactWriteItems is not refused).
NOT_ENFORCED_BY_MOTO = frozenset(
    {
        "ssm:GetParameter",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:Query",
    }
)
BACKOFF = planner.Policy(dt.timedelta(seconds=30), dt.timedelta(minutes=8))
# Actions whose check in the emulator sees the real resource ARN (see the module docstring).
RESOURCE_CHECKED = frozenset(
    {
        "cloudformation:UpdateStack",
        # The emulator authorises the change-set calls on the stack's ARN, as UpdateStack.
        "cloudformation:CreateChangeSet",
        "cloudformation:DescribeChangeSet",
        "cloudformation:DeleteChangeSet",
        "s3:GetObject",
        "sts:AssumeRole",
    }
)


# --- the policy under test --------------------------------------------------------------


def shipped_policy() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(POLICY_FILE.read_text("utf-8"))
    return document


def actions(document: dict[str, Any]) -> set[str]:
    """Every action the policy allows, whatever statement holds it."""
    found: set[str] = set()
    for statement in document["Statement"]:
        listed = statement["Action"]
        found.update([listed] if isinstance(listed, str) else listed)
    return found


def for_the_emulator(document: dict[str, Any], account: str) -> dict[str, Any]:
    """The policy with this test's names, fitted to what moto evaluates; same actions."""
    text = (
        json.dumps(document)
        .replace("ACCOUNT_ID", account)
        .replace("STACK_NAME_PREFIX", STACK_PREFIX)
        .replace("RECORD_BUCKET", BUCKET)
        .replace("RECORD_PREFIX", PREFIX)
        .replace("RECORD_PATH", "deploy-status")
        .replace("IMAGE_PATH", "images")
        .replace("LOCK_TABLE", "reconciler-locks")
        .replace("ROLE_NAME_FROM_SPEC_ROLEARN", "biglearn-deployer")
    )
    fitted: dict[str, Any] = json.loads(text)
    statements: list[dict[str, Any]] = []
    for statement in fitted["Statement"]:
        listed = statement["Action"]
        names = [listed] if isinstance(listed, str) else list(listed)
        checked = [a for a in names if a in RESOURCE_CHECKED]
        others = [a for a in names if a not in RESOURCE_CHECKED]
        if checked:  # keep the policy's own resource: the emulator checks it for real
            statements.append({**statement, "Action": checked})
        if others:  # moto checks these against "*" only
            resource = statement["Resource"]
            resources = [resource] if isinstance(resource, str) else list(resource)
            widened = {**statement, "Action": others, "Resource": [*resources, "*"]}
            if checked and "Sid" in statement:  # Sids must stay unique within a policy
                widened["Sid"] = f"{statement['Sid']}AnyResource"
            statements.append(widened)
    fitted["Statement"] = statements
    assert actions(fitted) == actions(document)  # fitted, never widened by an action
    return fitted


def without(document: dict[str, Any], action: str) -> dict[str, Any]:
    """The policy with one action taken out of every statement (empty statements dropped)."""
    trimmed = copy.deepcopy(document)
    kept = []
    for statement in trimmed["Statement"]:
        listed = statement["Action"]
        names = [a for a in ([listed] if isinstance(listed, str) else listed) if a != action]
        if names:
            kept.append({**statement, "Action": names})
    trimmed["Statement"] = kept
    return trimmed


# --- the world ----------------------------------------------------------------------------


def loaded_spec(
    image: str, name: str = NAME, stack: str = STACK, **rollout: Any
) -> catalog.LoadedSpec:
    doc = spec.StackDeployment.model_validate(
        {
            "apiVersion": "reconciler/v1",
            "kind": "StackDeployment",
            "metadata": {"name": name},
            "spec": {
                "stackName": stack,
                "region": REGION,
                "image": image,
                "capacity": {"api": 1, "migration": 1},
                "migration": {"check": "s3", "location": LOCATION, "timeout": "30m"},
                # The whole rollout: health through the load balancer, scaling frozen.
                "rollout": {"timeout": "45m", "suspendScaling": True, **rollout},
            },
        }
    )
    return catalog.LoadedSpec(doc, f"deploy-specs/{name}.yaml", REVISION, stale=False)


class Clock:
    """The planner's `now`: the real time until a test moves it on."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


@dataclasses.dataclass
class World:
    emulator: Emulator
    store: Store
    old: str
    new: str
    monkeypatch: pytest.MonkeyPatch
    requests: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)

    def daemon_user(self, document: dict[str, Any], name: str = "reconciler") -> None:
        """An IAM user holding exactly `document` (fitted); its keys become the process's.

        Must run before `enforce_iam`: making users is itself an IAM call.
        """
        iam = self.emulator.client("iam")
        fitted = for_the_emulator(document, self.emulator.account_id)
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="daemon", PolicyDocument=json.dumps(fitted))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        # What the daemon reads in production (boto3's environment provider), nothing else.
        self.monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        self.monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])

    def engine(self) -> engine.Engine:
        clients = aws.Clients(
            endpoint_url=self.emulator.endpoint_url,
            on_request=lambda *call: self.requests.append(call),
            max_attempts=2,
        )
        return engine.Engine(clients, self.store, Metrics(), BACKOFF, clock=Clock())

    def live(self) -> dict[str, str]:
        (stack,) = self.emulator.client("cloudformation").describe_stacks(StackName=STACK)["Stacks"]
        return {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}

    def errors(self) -> set[tuple[str, str]]:
        """(service, operation) of the daemon's calls answered with an error.

        Besides refusals this holds GetObject's NoSuchKey (404) while the migration record is
        not written yet: the request counter files every non-2xx answer as an error.
        """
        return {(s, o) for s, o, result in self.requests if result == "error"}


@pytest.fixture
def world(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for var in ("AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    # A session token would make moto look for an assumed role, not the user's key.
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    with Emulator(region=REGION, update_seconds=UPDATE_SECONDS, seed=7) as emu:
        old, new = (emu.register_image(f"biglearn-v{i}") for i in (1, 2))
        emu.ensure_bucket(BUCKET)
        emu.create_stack(
            STACK,
            {
                "EnvName": "iam",
                "KeyName": "iam-key",
                "RepoUrl": "https://example.invalid/biglearn.git",
                "BranchNameOrSha": "main",
                "LcImageId": old,
                "MigrationLcImageId": old,
                "MigrationDesiredCapacity": "0",
                "Asg1DesiredCapacity": "1",
            },
        )
        with Store.in_state_dir(tmp_path / "state") as store:
            yield World(emu, store, old, new, monkeypatch)


def drive(
    w: World,
    eng: engine.Engine,
    done: Callable[[engine.StepResult], bool],
    steps: int = 60,
    **rollout: Any,
) -> engine.StepResult:
    """Step until `done(result)`, letting each update settle in between; the last result."""
    result = eng.step(loaded_spec(w.new, **rollout))
    for _ in range(steps):
        if done(result):
            return result
        w.emulator.wait_settled(STACK)
        result = eng.step(loaded_spec(w.new, **rollout))
    raise AssertionError(f"not done after {steps} steps: {result}")


# --- the policy suffices --------------------------------------------------------------------


def test_the_shipped_policy_alone_rolls_out_a_fleet_from_shared_reads(world: World) -> None:
    """Four stacks, so the fleet view serves them (listings of stacks, groups and records):
    the shipped policy allows every shared read, and none is refused."""
    w = world
    params = w.live()
    stacks = [STACK] + [f"{STACK}-{i}" for i in range(1, 4)]
    for name in stacks[1:]:
        w.emulator.create_stack(name, params)
    w.daemon_user(shipped_policy())
    w.emulator.enforce_iam()
    specs = [loaded_spec(w.new, name=s, stack=s) for s in stacks]
    eng = w.engine()
    for s in specs:
        eng.track(s)
    with contextlib.ExitStack() as workers:
        for name in stacks:
            workers.enter_context(MigrationWorker(w.emulator, name, LOCATION, 1, 0.05))
        # Until done or a deadline, not a round count: shared reads are paced by wall time.
        until = time.monotonic() + 90
        while time.monotonic() < until:
            results = [eng.step(s) for s in specs]
            if all(r.phase == Phase.IN_SYNC and w.new in r.message for r in results):
                break
            for name in stacks:
                w.emulator.wait_settled(name)
    assert all(r.phase == Phase.IN_SYNC and w.new in r.message for r in results), results
    operations = {o for _, o, _ in w.requests}
    assert {"ListObjectsV2", "DescribeAutoScalingGroups"} <= operations  # the shared reads
    refused = w.errors() - {("s3", "GetObject")}
    assert refused == set(), f"calls refused: {sorted(refused)}"


def test_the_shipped_policy_alone_rolls_out_a_new_image_to_in_sync(world: World) -> None:
    """A user holding only docs/iam-policy.json rolls the stack out to the new image
    (migration, switch, health, scaling frozen and thawed) with no call refused."""
    w = world
    w.daemon_user(shipped_policy())
    w.emulator.enforce_iam()
    with MigrationWorker(w.emulator, STACK, LOCATION, steps=1, step_seconds=0.05):
        result = drive(w, w.engine(), lambda r: r.phase == Phase.IN_SYNC and w.new in r.message)
    assert (w.live()["LcImageId"], w.live()["MigrationLcImageId"]) == (w.new, w.new)
    refused = w.errors() - {("s3", "GetObject")}
    assert refused == set(), f"calls refused: {sorted(refused)}"
    assert result.error is None  # and so no step ended with AccessDenied, GetObject's included
    used = {(s, o) for s, o, _ in w.requests}
    # The rollout really exercised the rights the policy is for. Not ResumeProcesses: moto
    # replaces the API group on an image change, so nothing is left suspended to resume
    # (test_each_action_of_the_policy_is_enforced covers it).
    assert {("cloudformation", "UpdateStack"), ("s3", "GetObject")} <= used
    assert ("autoscaling", "SuspendProcesses") in used


def test_enforcement_is_on_keys_of_no_user_are_refused(world: World) -> None:
    """After enforce_iam the default keys (no IAM user) are refused, by moto and by the
    emulator's own UpdateStack alike: the success above is not enforcement being off."""
    w = world
    w.emulator.enforce_iam()
    stranger = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    cfn = boto3.client(
        "cloudformation", region_name=REGION, endpoint_url=w.emulator.endpoint_url, **stranger
    )
    for call in (
        lambda: cfn.describe_stacks(StackName=STACK),
        lambda: cfn.update_stack(StackName=STACK, UsePreviousTemplate=True),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert exc.value.response["Error"]["Code"] == "InvalidClientTokenId"


# --- a missing right shows ------------------------------------------------------------------


def test_without_update_stack_the_rollout_fails_with_access_denied(world: World) -> None:
    """No cloudformation:UpdateStack: the first phase is refused; the step result says
    AccessDenied and names the action, and the stack is never updated."""
    w = world
    w.daemon_user(without(shipped_policy(), "cloudformation:UpdateStack"))
    w.emulator.enforce_iam()
    before = w.live()
    result = drive(w, w.engine(), lambda r: "AccessDenied" in f"{r.message} {r.error}")
    told = f"{result.phase} {result.message} {result.error}"
    assert "cloudformation:UpdateStack" in told
    assert result.phase == Phase.FAILED, told
    assert w.live() == before
    assert w.errors() - {("s3", "GetObject")} == {("cloudformation", "UpdateStack")}


def test_update_stack_on_a_stack_outside_the_policy_prefix_is_refused(world: World) -> None:
    """UpdateStack is authorised on the stack's ARN: with the policy's stack pattern for
    another prefix, the same rollout is refused (the ARN pattern is really evaluated)."""
    w = world
    other = json.loads(json.dumps(shipped_policy()).replace("STACK_NAME_PREFIX", "other-"))
    w.daemon_user(other)
    w.emulator.enforce_iam()
    denied = lambda r: "AccessDenied" in f"{r.message} {r.error}"  # noqa: E731
    result = drive(w, w.engine(), denied, guard="off")
    assert result.phase == Phase.FAILED
    assert w.errors() - {("s3", "GetObject")} == {("cloudformation", "UpdateStack")}


def test_the_change_set_calls_are_authorised_on_the_stacks_arn_too(world: World) -> None:
    """With the guard on (the default), the policy for another prefix refuses the guard's
    template read and change set first: nothing is sent, and the step says AccessDenied."""
    w = world
    other = json.loads(json.dumps(shipped_policy()).replace("STACK_NAME_PREFIX", "other-"))
    w.daemon_user(other)
    w.emulator.enforce_iam()
    result = drive(w, w.engine(), lambda r: "AccessDenied" in f"{r.message} {r.error}")
    assert result.sent is None and w.live()["MigrationLcImageId"] == w.old
    refused = w.errors() - {("s3", "GetObject")}
    assert refused and refused <= {
        ("cloudformation", "GetTemplate"),
        ("cloudformation", "CreateChangeSet"),
    }
    assert not any(op == "UpdateStack" for _, op, _ in w.requests)


def test_without_s3_get_object_the_migration_gate_reports_access_denied(world: World) -> None:
    """No s3:GetObject: the migration record cannot be read, so every step reports the
    AccessDenied error (step result and the spec's status), none waits silently, and no
    update is sent: the record is read before phase 1, to skip migrations already done."""
    w = world
    w.daemon_user(without(shipped_policy(), "s3:GetObject"))
    w.emulator.enforce_iam()
    eng = w.engine()
    results = [eng.step(loaded_spec(w.new)) for _ in range(3)]
    for result in results:
        assert result.error is not None and "AccessDenied" in result.error, result
        assert "GetObject" in result.error
        assert result.sent is None
    status = eng.status(NAME)
    assert status is not None and "AccessDenied" in str(status.to_json()["lastError"])
    assert w.live()["MigrationLcImageId"] == w.old
    assert w.errors() == {("s3", "GetObject")}


# --- what the emulator enforces, action by action ----------------------------------------


_PROBES = itertools.count()  # a change set's name may be taken once per stack


def probes(w: World) -> dict[str, Callable[[Callable[[str], Any]], Any]]:
    """One call per action of the policy, made with a client factory `c(service)`.

    Arguments are the least each call takes; "not found" answers are fine (the right is
    what is measured). ConditionCheckItem has no call of its own: AWS authorises it per
    item inside TransactWriteItems.
    """
    cfn = w.emulator.client("cloudformation")
    balancer = cfn.describe_stack_resource(StackName=STACK, LogicalResourceId="ApiLoadBalancer")[
        "StackResourceDetail"
    ]["PhysicalResourceId"]
    group = cfn.describe_stack_resource(StackName=STACK, LogicalResourceId="Asg1")[
        "StackResourceDetail"
    ]["PhysicalResourceId"]
    table, account = "reconciler-locks", w.emulator.account_id
    keep = [{"ParameterKey": "EnvName", "UsePreviousValue": True}]
    item = {"pk": {"S": "x"}}
    return {
        "cloudformation:DescribeStacks": lambda c: c("cloudformation").describe_stacks(
            StackName=STACK
        ),
        "cloudformation:DescribeStackResources": lambda c: c(
            "cloudformation"
        ).describe_stack_resources(StackName=STACK),
        "cloudformation:DescribeStackEvents": lambda c: c("cloudformation").describe_stack_events(
            StackName=STACK
        ),
        "cloudformation:ListStackResources": lambda c: c("cloudformation").list_stack_resources(
            StackName=STACK
        ),
        "cloudformation:GetTemplate": lambda c: c("cloudformation").get_template(StackName=STACK),
        "cloudformation:CreateChangeSet": lambda c: c("cloudformation").create_change_set(
            StackName=STACK,
            ChangeSetName=f"probe-{next(_PROBES)}",
            UsePreviousTemplate=True,
            Parameters=keep,
        ),
        "cloudformation:DescribeChangeSet": lambda c: c("cloudformation").describe_change_set(
            StackName=STACK, ChangeSetName="probe-none"
        ),
        "cloudformation:DeleteChangeSet": lambda c: c("cloudformation").delete_change_set(
            StackName=STACK, ChangeSetName="probe-none"
        ),
        "s3:ListBucket": lambda c: c("s3").list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/"),
        "cloudformation:UpdateStack": lambda c: c("cloudformation").update_stack(
            StackName=STACK, UsePreviousTemplate=True, Parameters=keep
        ),
        "autoscaling:DescribeAutoScalingGroups": lambda c: c(
            "autoscaling"
        ).describe_auto_scaling_groups(),
        "ec2:DescribeInstances": lambda c: c("ec2").describe_instances(),
        "ec2:DescribeImages": lambda c: c("ec2").describe_images(Owners=["self"]),
        "cloudwatch:DescribeAlarms": lambda c: c("cloudwatch").describe_alarms(
            AlarmNames=["api-5xx"], AlarmTypes=["MetricAlarm", "CompositeAlarm"]
        ),
        "elasticloadbalancing:DescribeInstanceHealth": lambda c: c("elb").describe_instance_health(
            LoadBalancerName=balancer
        ),
        "elasticloadbalancing:DescribeTargetHealth": lambda c: c("elbv2").describe_target_health(
            TargetGroupArn=f"arn:aws:elasticloadbalancing:{REGION}:{account}:targetgroup/t/0a1b"
        ),
        "autoscaling:SuspendProcesses": lambda c: c("autoscaling").suspend_processes(
            AutoScalingGroupName=group, ScalingProcesses=["AZRebalance"]
        ),
        "autoscaling:ResumeProcesses": lambda c: c("autoscaling").resume_processes(
            AutoScalingGroupName=group, ScalingProcesses=["AZRebalance"]
        ),
        "s3:GetObject": lambda c: c("s3").get_object(Bucket=BUCKET, Key=f"{PREFIX}/x.json"),
        "ssm:GetParameter": lambda c: c("ssm").get_parameter(Name="/deploy-status/x"),
        "dynamodb:GetItem": lambda c: c("dynamodb").get_item(TableName=table, Key=item),
        "dynamodb:PutItem": lambda c: c("dynamodb").put_item(TableName=table, Item=item),
        "dynamodb:UpdateItem": lambda c: c("dynamodb").update_item(TableName=table, Key=item),
        "dynamodb:DeleteItem": lambda c: c("dynamodb").delete_item(TableName=table, Key=item),
        "dynamodb:Query": lambda c: c("dynamodb").query(
            TableName=table,
            KeyConditionExpression="pk = :v",
            ExpressionAttributeValues={":v": {"S": "x"}},
        ),
        "sts:AssumeRole": lambda c: c("sts").assume_role(
            RoleArn=f"arn:aws:iam::{account}:role/biglearn-deployer", RoleSessionName="probe"
        ),
    }


def refused(call: Callable[[], Any]) -> str | None:
    """The error code when the call was refused for want of a right, else None."""
    try:
        call()
    except ClientError as exc:
        code = str(exc.response["Error"]["Code"])
        return code if code in {"AccessDenied", "AccessDeniedException"} else None
    return None


def test_each_action_of_the_policy_is_enforced(world: World) -> None:
    """With the whole policy no probe is refused; with one action taken out, that very
    call is refused, except for the services moto does not check (NOT_ENFORCED_BY_MOTO):
    CloudFormation, Auto Scaling, EC2, both ELB APIs, S3 and STS rights are all enforced."""
    w = world
    document = shipped_policy()
    calls = probes(w)
    assert set(calls) == actions(document) - {"dynamodb:ConditionCheckItem"}
    iam = w.emulator.client("iam")
    keys: dict[str, dict[str, str]] = {}
    for index, missing in enumerate(["", *sorted(calls)]):  # "": the whole policy
        name = f"probe-{index}"
        fitted = for_the_emulator(without(document, missing) if missing else document, "x")
        fitted = json.loads(json.dumps(fitted).replace(":x:", f":{w.emulator.account_id}:"))
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(fitted))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        keys[missing] = {
            "aws_access_key_id": key["AccessKeyId"],
            "aws_secret_access_key": key["SecretAccessKey"],
        }
    w.emulator.enforce_iam()

    def as_user(missing: str) -> Callable[[str], Any]:
        def client(service: str) -> Any:
            factory: Any = boto3.client
            return factory(
                service, region_name=REGION, endpoint_url=w.emulator.endpoint_url, **keys[missing]
            )

        return client

    full = as_user("")
    assert {a: refused(lambda p=p: p(full)) for a, p in calls.items()} == dict.fromkeys(calls)
    found = {a: refused(lambda a=a, p=p: p(as_user(a))) for a, p in calls.items()}
    assert {a for a, code in found.items() if code is None} == NOT_ENFORCED_BY_MOTO, found
