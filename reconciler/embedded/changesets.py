"""Change sets as CloudFormation keeps them: created, described, listed and deleted.

Rules of this file:
- CreateChangeSet, DescribeChangeSet, DeleteChangeSet, ListChangeSets and GetTemplate are
  answered here, never by moto: moto lists no Changes for a parameter-only update, keeps
  one namespace of names for every stack and answers a missing change set with a
  ValidationError. ExecuteChangeSet is refused: the daemon updates with UpdateStack.
- A change set is computed when it is created (`changes.py`), against the stack as it is
  then, with the parameters UpdateStack would resolve (`cfn.resolve_parameters`: a
  parameter left out falls back to its default). It never touches the stack: no status,
  parameter, event or LastUpdatedTime of the stack moves.
- Its status follows the clock, no thread: CREATE_PENDING for the first half of its
  `seconds`, CREATE_IN_PROGRESS for the second, then CREATE_COMPLETE (ExecutionStatus
  AVAILABLE) or FAILED (UNAVAILABLE); `Changes` are listed once it is complete, a page of
  `page_size` at a time. An update of the stack after it makes it OBSOLETE, as on AWS.
- Names are per stack. The same name sent again with the same request is the same change
  set; with an attribute that differs it is AlreadyExistsException naming the attribute,
  in AWS's words ("... cannot be created due to a mismatch with existing attribute ...").
- A change set goes with its stack: once the stack is deleted, none of its change sets
  is found.
- Callers hold the update layer's lock: moto's objects are read here.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from moto.cloudformation.models import Stack, cloudformation_backends
from moto.core.utils import utcnow
from moto.ec2.models import ec2_backends
from moto.utilities.utils import get_partition

from reconciler.embedded import cfn, changes, intrinsics

NO_CHANGES = (
    "The submitted information didn't contain changes. "
    "Submit different information to create a change set."
)
STAGES = ("Original", "Processed")  # no transforms here: both stages are the same text
_NAME_RE = re.compile(r"^[a-zA-Z][-a-zA-Z0-9]{0,127}$")
_CREATING = ("CREATE_PENDING", "CREATE_IN_PROGRESS")


@dataclasses.dataclass
class ChangeSet:
    """One change set: its request, its computed Changes, and when it was created."""

    name: str
    arn: str
    stack: Stack
    request: dict[str, str]  # the attributes AWS compares when the name comes again
    template: str
    parameters: dict[str, str]
    no_echo: frozenset[str]
    changes: list[dict[str, Any]]
    failure: str | None
    created: dt.datetime
    started: float  # the clock's reading at creation
    seconds: float  # how long it takes to create
    stack_updated: Any  # the stack's LastUpdatedTime then: a later update obsoletes it
    description: str | None = None
    capabilities: list[str] = dataclasses.field(default_factory=list)
    tags: list[dict[str, str]] = dataclasses.field(default_factory=list)
    notification_arns: list[str] = dataclasses.field(default_factory=list)

    def status(self, now: float) -> str:
        elapsed = now - self.started
        if elapsed < self.seconds / 2:
            return "CREATE_PENDING"
        if elapsed < self.seconds:
            return "CREATE_IN_PROGRESS"
        return "FAILED" if self.failure is not None else "CREATE_COMPLETE"

    def execution_status(self, now: float) -> str:
        if self.status(now) != "CREATE_COMPLETE":
            return "UNAVAILABLE"
        if getattr(self.stack, "last_updated_time", None) != self.stack_updated:
            return "OBSOLETE"
        return "AVAILABLE" if self.stack.status in cfn.UPDATABLE else "UNAVAILABLE"

    def summary(self, now: float) -> dict[str, Any]:
        """As ListChangeSets shows it; DescribeChangeSet adds to it."""
        summary: dict[str, Any] = {
            "StackId": self.stack.stack_id,
            "StackName": self.stack.name,
            "ChangeSetId": self.arn,
            "ChangeSetName": self.name,
            "ExecutionStatus": self.execution_status(now),
            "Status": self.status(now),
            "CreationTime": self.created,
            "IncludeNestedStacks": False,
        }
        if summary["Status"] == "FAILED":
            summary["StatusReason"] = self.failure
        if self.description is not None:
            summary["Description"] = self.description
        return summary


class ChangeSets:
    """Every change set of the emulator, by ARN in creation order."""

    def __init__(
        self,
        seconds: Callable[[], float],
        page_size: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._seconds = seconds
        self._page_size = page_size
        self._clock = clock
        self._all: dict[str, ChangeSet] = {}

    def clear(self) -> None:
        self._all.clear()

    def names(self, stack: Stack) -> list[str]:
        """The stack's change sets that exist, oldest first."""
        return [c.name for c in self._all.values() if c.stack is stack and _alive(c)]

    def stack_arn(self, form: Mapping[str, str]) -> str | None:
        """The stack a request by change-set ARN is about, to authorise it on; else None."""
        found = self._all.get(form.get("ChangeSetName", ""))
        return None if found is None else str(found.stack.stack_id)

    # --- the API ----------------------------------------------------------------------

    def create(self, account_id: str, region: str, form: Mapping[str, str]) -> dict[str, str]:
        """CreateChangeSet: its Id (ARN) and StackId, or `Refused`."""
        name = _valid_name(form.get("ChangeSetName", ""))
        _check_type(form)
        stack = cfn.find_stack(account_id, region, form.get("StackName", ""))
        request = _request(form)
        existing = self._named(stack, name)
        if existing is not None:
            return _again(existing, request)
        _check_updatable(stack, form)
        template = cfn.requested_template(stack, form, account_id, region)
        parameters = cfn.resolve_parameters(stack, template, cfn.parse_parameters(form))
        arn = (
            f"arn:{get_partition(region)}:cloudformation:{region}:{account_id}:"
            f"changeSet/{name}/{uuid.uuid4()}"
        )
        self._all[arn] = self._computed(name, arn, stack, form, template, parameters)
        return {"Id": arn, "StackId": str(stack.stack_id)}

    def _computed(
        self,
        name: str,
        arn: str,
        stack: Stack,
        form: Mapping[str, str],
        template: str,
        parameters: dict[str, str],
    ) -> ChangeSet:
        """A new change set, its Changes computed now against the stack as it is."""
        parsed = _parsed(template)
        unchanged = template == stack.template and parameters == cfn.live_parameters(stack)
        found = [] if unchanged else _changes(stack, parsed, parameters)
        return ChangeSet(
            name=name,
            arn=arn,
            stack=stack,
            request=_request(form),
            template=template,
            parameters=parameters,
            no_echo=_no_echo(parsed),
            changes=[c.rendered() for c in found],
            failure=NO_CHANGES if unchanged else None,
            created=utcnow(),
            started=self._clock(),
            seconds=self._seconds(),
            stack_updated=getattr(stack, "last_updated_time", None),
            description=form.get("Description"),
            capabilities=cfn.parse_list(form, "Capabilities"),
            tags=cfn.parse_members(form, "Tags"),
            notification_arns=cfn.parse_list(form, "NotificationARNs"),
        )

    def describe(self, account_id: str, region: str, form: Mapping[str, str]) -> dict[str, Any]:
        """DescribeChangeSet: one page of its Changes, NextToken while more remain."""
        change_set = self._find(account_id, region, form)
        now = self._clock()
        listed = change_set.changes if change_set.status(now) == "CREATE_COMPLETE" else []
        start, size = _offset(change_set, form.get("NextToken")), max(1, self._page_size())
        described = change_set.summary(now)
        described.update(
            Parameters=[
                {
                    "ParameterKey": key,
                    "ParameterValue": "****" if key in change_set.no_echo else value,
                }
                for key, value in change_set.parameters.items()
            ],
            NotificationARNs=change_set.notification_arns,
            Capabilities=change_set.capabilities,
            Tags=change_set.tags,
            Changes=listed[start : start + size],
        )
        if start + size < len(listed):
            described["NextToken"] = _token(change_set, start + size)
        return described

    def delete(self, account_id: str, region: str, form: Mapping[str, str]) -> None:
        """DeleteChangeSet. Refused while it is being created, as AWS documents."""
        change_set = self._find(account_id, region, form)
        status = change_set.status(self._clock())
        if status in _CREATING:
            raise cfn.Refused(
                f"ChangeSet [{change_set.arn}] cannot be deleted in its current status of "
                f"[{status}]",
                "InvalidChangeSetStatus",
            )
        del self._all[change_set.arn]

    def listed(self, account_id: str, region: str, form: Mapping[str, str]) -> dict[str, Any]:
        """ListChangeSets of one stack (one page: a stack has a handful at most)."""
        stack = cfn.find_stack(account_id, region, form.get("StackName", ""))
        now = self._clock()
        return {
            "Summaries": [
                c.summary(now) for c in self._all.values() if c.stack is stack and _alive(c)
            ]
        }

    def template_of(self, account_id: str, region: str, form: Mapping[str, str]) -> dict[str, Any]:
        """GetTemplate of a stack (a deleted one too, by id) or of a change set."""
        stage = form.get("TemplateStage") or "Original"
        if stage not in STAGES:
            raise cfn.Refused(
                f"1 validation error detected: Value '{stage}' at 'templateStage' failed to "
                "satisfy constraint: Member must satisfy enum value set: [Original, Processed]"
            )
        if form.get("ChangeSetName"):
            body: Any = self._find(account_id, region, form).template
        else:
            name = form.get("StackName", "")
            try:
                body = cloudformation_backends[account_id][region].get_stack(name).template
            except Exception as exc:  # moto's ValidationError for a missing stack
                raise cfn.Refused(f"Stack with id {name} does not exist") from exc
        text = body if isinstance(body, str) else json.dumps(body)
        return {"TemplateBody": text, "StagesAvailable": list(STAGES)}

    # --- lookups ----------------------------------------------------------------------

    def _find(self, account_id: str, region: str, form: Mapping[str, str]) -> ChangeSet:
        """By ARN, or by name within StackName; ChangeSetNotFound (404) as AWS answers."""
        name = form.get("ChangeSetName", "")
        if name.startswith("arn:"):
            found = self._all.get(name)
            if found is not None and _alive(found):
                return found
            raise _not_found(name)
        stack_name = form.get("StackName")
        if not stack_name:
            raise cfn.Refused(
                "StackName must be specified if ChangeSetName is not specified as an ARN."
            )
        try:
            stack = cfn.find_stack(account_id, region, stack_name)
        except cfn.Refused as exc:
            raise _not_found(name) from exc
        found = self._named(stack, name)
        if found is None:
            raise _not_found(name)
        return found

    def _named(self, stack: Stack, name: str) -> ChangeSet | None:
        for change_set in self._all.values():
            if change_set.stack is stack and change_set.name == name and _alive(change_set):
                return change_set
        return None


# --- helpers ------------------------------------------------------------------------------


def _changes(
    stack: Stack, template: Mapping[str, Any], parameters: Mapping[str, str]
) -> list[changes.ResourceChange]:
    """The stack as it is against the stack with `template` and `parameters`."""
    before = _evaluation(stack, _parsed(str(stack.template)), cfn.live_parameters(stack))
    after = _evaluation(stack, template, parameters)
    try:
        return changes.compute(before, after, _physical_ids(stack))
    except intrinsics.TemplateError as exc:
        raise cfn.Refused(str(exc)) from exc


def _evaluation(
    stack: Stack, template: Mapping[str, Any], parameters: Mapping[str, str]
) -> intrinsics.Evaluation:
    region = str(stack.region_name)
    partition = get_partition(region)
    pseudo = {
        "AWS::AccountId": stack.account_id,
        "AWS::NotificationARNs": list(stack.notification_arns),
        "AWS::Partition": partition,
        "AWS::Region": region,
        "AWS::StackId": stack.stack_id,
        "AWS::StackName": stack.name,
        "AWS::URLSuffix": "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com",
    }
    # Fn::GetAZs answers what DescribeAvailabilityZones does in the region.
    zones = ec2_backends[stack.account_id][region].describe_availability_zones()
    return intrinsics.Evaluation(template, parameters, pseudo, [z.name for z in zones])


def _physical_ids(stack: Stack) -> dict[str, str]:
    """The physical id of each resource moto made for the stack, by logical id."""
    made = stack.resource_map._parsed_resources
    declared = stack.template_dict.get("Resources") or {}
    ids = {name: getattr(made.get(name), "physical_resource_id", None) for name in declared}
    return {name: str(value) for name, value in ids.items() if value is not None}


def _parsed(template: str) -> dict[str, Any]:
    try:
        parsed = Stack.parse_template(template)
    except Exception as exc:  # PyYAML's or JSON's error, whichever parser had the last word
        raise cfn.Refused(f"Template format error: {exc}") from exc
    if not isinstance(parsed, dict):
        raise cfn.Refused("Template format error: not a JSON or YAML object")
    return parsed


def _no_echo(template: Mapping[str, Any]) -> frozenset[str]:
    declared = template.get("Parameters") or {}
    return frozenset(
        key
        for key, declaration in declared.items()
        if isinstance(declaration, dict) and str(declaration.get("NoEcho")).lower() == "true"
    )


def _request(form: Mapping[str, str]) -> dict[str, str]:
    """What makes two CreateChangeSet calls the same request, in the order AWS checks."""
    return {
        "ClientToken": form.get("ClientToken", ""),
        "Template": form.get("TemplateBody") or form.get("TemplateURL") or "UsePreviousTemplate",
        "Parameters": json.dumps(cfn.parse_parameters(form), sort_keys=True),
        "Capabilities": json.dumps(sorted(cfn.parse_list(form, "Capabilities"))),
        "Description": form.get("Description", ""),
    }


def _check_type(form: Mapping[str, str]) -> None:
    kind = form.get("ChangeSetType") or "UPDATE"  # AWS's default, unlike moto's (CREATE)
    if kind != "UPDATE":
        raise cfn.Refused(f"ChangeSetType {kind} is not emulated: create stacks with CreateStack")


def _check_updatable(stack: Stack, form: Mapping[str, str]) -> None:
    """AWS refuses a change set the stack could not be updated with, as UpdateStack."""
    if stack.status not in cfn.UPDATABLE:
        raise cfn.Refused(
            f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated."
        )
    if form.get("UsePreviousTemplate") == "true" and (
        "TemplateBody" in form or "TemplateURL" in form
    ):
        raise cfn.Refused(
            "You cannot specify both usePreviousTemplate and Template Body/Template URL."
        )


def _again(existing: ChangeSet, request: Mapping[str, str]) -> dict[str, str]:
    """A name the stack already has: the same request is answered as before (a retry)."""
    for attribute, value in request.items():
        if existing.request.get(attribute) != value:
            raise cfn.Refused(
                f"ChangeSet {existing.name} cannot be created due to a mismatch with existing "
                f"attribute {attribute}",
                "AlreadyExistsException",
            )
    return {"Id": existing.arn, "StackId": str(existing.stack.stack_id)}


def _valid_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise cfn.Refused(
            f"1 validation error detected: Value '{name}' at 'changeSetName' failed to "
            "satisfy constraint: Member must satisfy regular expression pattern: "
            "[a-zA-Z][-a-zA-Z0-9]*"
        )
    return name


def _alive(change_set: ChangeSet) -> bool:
    stack = change_set.stack
    return stack.stack_id in cloudformation_backends[stack.account_id][stack.region_name].stacks


def _not_found(name: str) -> cfn.Refused:
    return cfn.Refused(f"ChangeSet [{name}] does not exist", "ChangeSetNotFound", 404)


def _token(change_set: ChangeSet, offset: int) -> str:
    raw = json.dumps([change_set.arn, offset]).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _offset(change_set: ChangeSet, token: str | None) -> int:
    """Where a NextToken of this change set resumes; ValidationError for any other."""
    if not token:
        return 0
    try:
        arn, offset = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise cfn.Refused("Invalid NextToken") from exc
    if arn != change_set.arn or not isinstance(offset, int) or offset < 0:
        raise cfn.Refused("Invalid NextToken")
    return offset
