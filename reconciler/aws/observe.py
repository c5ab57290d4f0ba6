"""Observe one stack: everything the planner may know about it, read now, in few calls.

Rules of this file:
- Read only; nothing here changes AWS.
- Budget: one DescribeStacks always. Only when the stack is stable (a status in
  STABLE) the groups are read: DescribeStackResources, DescribeAutoScalingGroups,
  DescribeInstances (batched), one health call per load balancer. A busy stack or one that
  needs a person costs one call (plus the record): nothing would be acted on anyway.
- DescribeStackEvents only when DescribeStacks gives no LastUpdatedTime for a stack that
  has been updated (moto omits it; real AWS does not), or no StackStatusReason for a stack
  that rolled back (ROLLED_BACK): then one page, newest first, holds why. Both needs share
  the pages read, so a poll never reads a page twice.
- The migration record is read only when the spec has a check and the live API image is
  not the target; a record that cannot count (RecordInvalid) is reported through
  `on_warning` (by default a warning naming the stack; the engine binds the spec's name
  around its step) and observed as absent: it must not block the stack.
- What a person must fix (a resource name the stack does not have, a group that is gone)
  goes to Observed.problem, in words that say what to change.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import structlog
from botocore.exceptions import ClientError

from reconciler import model, planner, spec
from reconciler.aws import records
from reconciler.aws.clients import Clients

if TYPE_CHECKING:
    from mypy_boto3_autoscaling.type_defs import AutoScalingGroupTypeDef, InstanceTypeDef
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_cloudformation.type_defs import StackEventTypeDef, StackTypeDef

log = structlog.get_logger("reconciler.observe")

OnWarning = Callable[[str], None]

STABLE = planner.STABLE  # one definition of "stable": the planner's
# Statuses whose "why" a person or the failure record needs; only these may cost the events.
ROLLED_BACK = frozenset(
    {"UPDATE_ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_FAILED"}
)
GROUP_TYPE = "AWS::AutoScaling::AutoScalingGroup"
STACK_TYPE = "AWS::CloudFormation::Stack"
EVENT_PAGES = 3  # the stack's UPDATE_IN_PROGRESS is normally on the first page of 100
INSTANCE_BATCH = 200  # the most values one EC2 filter takes
RESOURCES_PAGE = 100  # DescribeStackResources answers at most this many, unpaged


def observe(
    clients: Clients,
    sp: spec.Spec,
    image: str,
    *,
    on_warning: OnWarning | None = None,
) -> model.Observed:
    """What the stack of `sp` looks like now, for the planner bringing it to `image`."""
    warn = on_warning or _warning(sp)
    cfn = clients.cloudformation(sp.region, sp.role_arn)
    stack = _describe_stack(cfn, sp.stack_name)
    if stack is None:
        return model.Observed(stack=None)
    view = _stack_view(cfn, stack)
    record = _record(clients, sp, image, view, warn)
    if view.status not in STABLE:
        return model.Observed(stack=view, migration_record=record)
    groups = _group_names(cfn, sp)
    if isinstance(groups, Problem):
        return model.Observed(stack=view, migration_record=record, problem=groups.message)
    group = _describe_group(clients, sp, groups)
    if group is None:
        problem = (
            f"the Auto Scaling group {groups!r} of resource {sp.resource_names.api_group!r} "
            f"in stack {sp.stack_name!r} does not exist; was it deleted outside CloudFormation?"
        )
        return model.Observed(stack=view, migration_record=record, problem=problem)
    return model.Observed(
        stack=view,
        api_desired_capacity=group["DesiredCapacity"],
        api_instances=_instances(clients, sp, group),
        migration_record=record,
        api_group=group["AutoScalingGroupName"],
        api_suspended=frozenset(p["ProcessName"] for p in group.get("SuspendedProcesses", [])),
    )


# --- the stack ------------------------------------------------------------------------


def _describe_stack(cfn: CloudFormationClient, name: str) -> StackTypeDef | None:
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "ValidationError" and "does not exist" in error.get("Message", ""):
            return None
        raise
    return stacks[0] if stacks else None


def parameters(stack: StackTypeDef) -> dict[str, str]:
    """Every template parameter with its live value.

    A failed update in moto can leave a parameter without a value: "" keeps the key
    visible (every template parameter is listed) without inventing a value."""
    return {
        p["ParameterKey"]: p.get("ParameterValue", "")
        for p in stack.get("Parameters", [])
        if "ParameterKey" in p
    }


def _stack_view(cfn: CloudFormationClient, stack: StackTypeDef) -> model.StackView:
    events = _Events(cfn, stack["StackId"])
    return model.StackView(
        status=stack["StackStatus"],
        parameters=parameters(stack),
        last_updated=_last_updated(stack, events),
        status_reason=_status_reason(stack, events),
    )


class _Events:
    """The stack's events, newest first: each page is read once, and only when asked for."""

    def __init__(self, cfn: CloudFormationClient, stack_id: str) -> None:
        # paginate() sends nothing until iterated.
        self._source = iter(cfn.get_paginator("describe_stack_events").paginate(StackName=stack_id))
        self._read: list[list[StackEventTypeDef]] = []

    def newest(self, pages: int) -> Iterator[StackEventTypeDef]:
        """The events of the first `pages` pages, newest first."""
        for number in range(pages):
            if number == len(self._read):
                page = next(self._source, None)
                if page is None:
                    return
                self._read.append(page["StackEvents"])
            yield from self._read[number]


def _last_updated(stack: StackTypeDef, events: _Events) -> dt.datetime | None:
    if "LastUpdatedTime" in stack:
        return _utc(stack["LastUpdatedTime"])
    status = stack["StackStatus"]
    if status.startswith(("CREATE_", "ROLLBACK_", "IMPORT_")):
        return None  # never updated: nothing to look up
    for event in events.newest(EVENT_PAGES):
        if (
            event.get("ResourceType") == STACK_TYPE
            and event.get("PhysicalResourceId") in (stack["StackId"], None)
            and event.get("ResourceStatus") == "UPDATE_IN_PROGRESS"
        ):
            return _utc(event["Timestamp"])
    return None


def _status_reason(stack: StackTypeDef, events: _Events) -> str | None:
    """Why the stack is where it is; for a rollback without one, from its newest events.

    The rollback's own *ROLLBACK_IN_PROGRESS event names what failed; a *_FAILED event
    newer than it (a rollback that failed in turn) says what now needs a person.
    """
    reason = stack.get("StackStatusReason")
    if reason or stack["StackStatus"] not in ROLLED_BACK:
        return reason
    for event in events.newest(1):
        status = event.get("ResourceStatus", "")
        if status.endswith(("ROLLBACK_IN_PROGRESS", "_FAILED")) and event.get(
            "ResourceStatusReason"
        ):
            return event["ResourceStatusReason"]
    return None


def _utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC)


# --- the groups -----------------------------------------------------------------------


class Problem:
    """Something a person must fix, in words that say what to change."""

    def __init__(self, message: str) -> None:
        self.message = message


def _group_names(cfn: CloudFormationClient, sp: spec.Spec) -> str | Problem:
    """The API group's physical name; a problem when either logical id is not a group."""
    return api_group_name(resources(cfn, sp.stack_name), sp)


Resources = dict[str, tuple[str, str]]  # logical id -> (type, physical id)


def api_group_name(resources: Resources, sp: spec.Spec) -> str | Problem:
    """The API group's physical name in `resources`; a problem when either logical id of the
    spec's resourceNames is not an Auto Scaling group there."""
    wanted = (
        ("resourceNames.apiGroup", sp.resource_names.api_group),
        ("resourceNames.migrationGroup", sp.resource_names.migration_group),
    )
    missing = [
        f"{field} {logical!r}"
        for field, logical in wanted
        if resources.get(logical, ("", ""))[0] != GROUP_TYPE
    ]
    if missing:
        groups = sorted(k for k, (kind, _) in resources.items() if kind == GROUP_TYPE)
        return Problem(
            f"stack {sp.stack_name!r} has no Auto Scaling group for {' and '.join(missing)}; "
            f"its groups are {', '.join(groups) or 'none'}: fix resourceNames in the spec"
        )
    physical = resources[sp.resource_names.api_group][1]
    if not physical:
        return Problem(f"resource {sp.resource_names.api_group!r} has no physical id yet")
    return physical


def resources(cfn: CloudFormationClient, stack_name: str) -> Resources:
    """Logical id -> (type, physical id); one call unless the stack is very large."""
    # AWS names every resource; moto 5 answers a replaced EC2 instance without its names,
    # and what has no logical id is nothing a spec could name.
    found = [
        r
        for r in cfn.describe_stack_resources(StackName=stack_name)["StackResources"]
        if "LogicalResourceId" in r
    ]
    pairs: Iterable[tuple[str, str, str]] = (
        (r["LogicalResourceId"], r["ResourceType"], r.get("PhysicalResourceId", "")) for r in found
    )
    if len(found) >= RESOURCES_PAGE:  # DescribeStackResources stops at 100: page instead
        pages = cfn.get_paginator("list_stack_resources").paginate(StackName=stack_name)
        pairs = (
            (r["LogicalResourceId"], r["ResourceType"], r.get("PhysicalResourceId", ""))
            for page in pages
            for r in page["StackResourceSummaries"]
        )
    return {logical: (kind, physical) for logical, kind, physical in pairs}


def _describe_group(clients: Clients, sp: spec.Spec, name: str) -> AutoScalingGroupTypeDef | None:
    asg = clients.autoscaling(sp.region, sp.role_arn)
    groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    return groups[0] if groups else None


def _instances(
    clients: Clients, sp: spec.Spec, group: AutoScalingGroupTypeDef
) -> tuple[model.Instance, ...]:
    members = group.get("Instances", [])
    ids = [m["InstanceId"] for m in members]
    found = images(clients, sp.region, sp.role_arn, ids)
    return instances(members, found, health(clients, sp, group, ids))


def instances(
    members: Sequence[InstanceTypeDef],
    images: Mapping[str, str],
    healthy: Mapping[str, bool] | None,
) -> tuple[model.Instance, ...]:
    """The API group's members as the planner sees them."""
    return tuple(
        model.Instance(
            id=m["InstanceId"],
            image=images.get(m["InstanceId"]),
            lifecycle=m["LifecycleState"],
            healthy=None if healthy is None else healthy.get(m["InstanceId"], False),
        )
        for m in members
    )


def images(
    clients: Clients, region: str, role_arn: str | None, ids: Sequence[str]
) -> dict[str, str]:
    """Instance id -> AMI. A filter, not InstanceIds: an id already gone is no error."""
    ec2 = clients.ec2(region, role_arn)
    found: dict[str, str] = {}
    for start in range(0, len(ids), INSTANCE_BATCH):
        batch = list(ids[start : start + INSTANCE_BATCH])
        pages = ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "instance-id", "Values": batch}]
        )
        for page in pages:
            for reservation in page["Reservations"]:
                for inst in reservation.get("Instances", []):
                    if "ImageId" in inst:
                        found[inst["InstanceId"]] = inst["ImageId"]
    return found


def health(
    clients: Clients, sp: spec.Spec, group: AutoScalingGroupTypeDef, ids: Sequence[str]
) -> dict[str, bool] | None:
    """Instance id -> healthy in every load balancer of the group; None without any."""
    verdicts: list[Mapping[str, bool]] = []
    elb = clients.elb(sp.region, sp.role_arn)
    for name in group.get("LoadBalancerNames", []):
        states = elb.describe_instance_health(LoadBalancerName=name)["InstanceStates"]
        verdicts.append({s["InstanceId"]: s.get("State") == "InService" for s in states})
    elbv2 = clients.elbv2(sp.region, sp.role_arn)
    for arn in group.get("TargetGroupARNs", []):
        targets = elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        verdicts.append(
            {
                t["Target"]["Id"]: t.get("TargetHealth", {}).get("State") == "healthy"
                for t in targets
            }
        )
    if not verdicts:
        return None
    # Not registered with a load balancer yet counts as not healthy there.
    return {i: all(v.get(i, False) for v in verdicts) for i in ids}


# --- the migration record -------------------------------------------------------------


def _record(
    clients: Clients,
    sp: spec.Spec,
    image: str,
    view: model.StackView,
    warn: OnWarning,
) -> model.MigrationRecord | None:
    if sp.migration.check == "none":
        return None
    if view.parameters.get(sp.parameter_names.api_image) == image:
        return None  # once the API runs the image, no decision needs its record: save the call
    try:
        return records.read_record(clients, sp, image)
    except records.RecordInvalid as exc:
        warn(str(exc))
        return None


def _warning(sp: spec.Spec) -> OnWarning:
    """A record that cannot count, logged with the stack it belongs to."""
    bound = log.bind(stack=sp.stack_name, region=sp.region)
    return lambda message: bound.warning("migration record ignored", error=message)
