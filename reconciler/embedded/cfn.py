"""CloudFormation stack updates as AWS runs them, on top of moto's synchronous ones.

Rules of this file:
- Only UpdateStack, CancelUpdateStack and ContinueUpdateRollback are answered here (the
  change sets in `changesets.py`); every other CloudFormation call goes to moto, which
  reads the status, parameters, `last_updated_time` and events this file leaves on moto's
  own `Stack` objects (moto's serializer renders any attribute named like the API field).
- An update is a timeline of (fraction of `update_seconds`, status, action), a table per
  outcome. The new template and parameters are applied to moto at once, so describe_stacks
  shows them while the update is in progress, as AWS does; a rollback applies the old ones.
- Every mutation of moto's state holds `lock`; the WSGI layer holds it around each request,
  because moto's backends are not thread-safe.
- A stack's `generation` counts interventions (a new update, set_status, delete): a timeline
  step whose generation is stale does nothing, so a test can freeze a stack mid-update.
- Rollback triggers (moto ignores RollbackConfiguration): kept per stack; an update that
  omits RollbackTriggers keeps the stack's, one that gives them replaces them (an empty list
  clears them). While an update is UPDATE_IN_PROGRESS, which lasts MonitoringTimeInMinutes
  longer, a trigger alarm in ALARM, or missing, rolls it back at once, the reason naming the
  alarm. The alarms are checked when the update starts and after every CloudWatch request
  (`check_alarms`, called by the WSGI layer): moto changes alarm states only when asked to,
  so nothing needs to poll.
- DisableRollback: a failure (fail_next, a trigger) ends the update UPDATE_FAILED with its
  new parameters in place, instead of rolling back. AWS documents "preserve the state on
  failure" and nothing specific to triggers; a trigger alarm is treated as any failure.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from typing import Any

from moto.autoscaling.models import FakeAutoScalingGroup, autoscaling_backends
from moto.cloudformation.models import Event, Stack, cloudformation_backends
from moto.cloudformation.utils import get_stack_from_s3_url
from moto.cloudwatch.models import cloudwatch_backends
from moto.core.utils import utcnow
from moto.utilities.utils import get_partition

# AWS accepts UpdateStack only in these states; the rest are busy or need a person.
UPDATABLE = frozenset(
    {
        "CREATE_COMPLETE",
        "UPDATE_COMPLETE",
        "UPDATE_ROLLBACK_COMPLETE",
        "IMPORT_COMPLETE",
        "IMPORT_ROLLBACK_COMPLETE",
    }
)
DEFAULT_FAILURE = "The following resource(s) failed to update: [MigrationAsg]."

_APPLY_NEW, _APPLY_OLD = "apply-new", "apply-old"
Step = tuple[float, str, str | None]  # (fraction of update_seconds, status, action)
SUCCESS: tuple[Step, ...] = (
    (0.8, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", None),
    (1.0, "UPDATE_COMPLETE", None),
)
FAILURE: tuple[Step, ...] = (
    (0.5, "UPDATE_ROLLBACK_IN_PROGRESS", _APPLY_OLD),
    (0.8, "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", None),
    (1.0, "UPDATE_ROLLBACK_COMPLETE", None),
)
# DisableRollback: the failure stays, and so do the update's parameters.
FAILURE_KEPT: tuple[Step, ...] = ((0.5, "UPDATE_FAILED", None),)
CLEANUP = "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"  # past it, nothing rolls the update back
MAX_TRIGGERS = 5
TRIGGER_TYPES = frozenset({"AWS::CloudWatch::Alarm", "AWS::CloudWatch::CompositeAlarm"})
# CancelUpdateStack and ContinueUpdateRollback: the rollback starts at once.
ROLLBACK_NOW: tuple[Step, ...] = (
    (0.0, "UPDATE_ROLLBACK_IN_PROGRESS", _APPLY_OLD),
    (0.6, "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", None),
    (1.0, "UPDATE_ROLLBACK_COMPLETE", None),
)


class Refused(Exception):
    """A call AWS answers with an error: `ValidationError` unless said otherwise."""

    def __init__(self, message: str, code: str = "ValidationError", status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclasses.dataclass
class _Update:
    """What one accepted update changes; kept to roll it back."""

    stack: Stack
    token: str | None
    old_template: str
    old_parameters: dict[str, str]
    failure: str | None  # the rollback reason when this update is to fail
    disable_rollback: bool = False
    monitor_seconds: float = 0.0  # MonitoringTimeInMinutes: UPDATE_IN_PROGRESS lasts longer


@dataclasses.dataclass(frozen=True)
class Rollback:
    """A stack's rollback configuration, as its last update left it."""

    triggers: tuple[tuple[str, str], ...] = ()  # (alarm ARN, type)
    monitoring_minutes: int = 0

    def rendered(self) -> dict[str, Any]:
        """As DescribeStacks shows it (moto renders a `rollback_configuration` attribute)."""
        return {
            "RollbackTriggers": [{"Arn": arn, "Type": kind} for arn, kind in self.triggers],
            "MonitoringTimeInMinutes": self.monitoring_minutes,
        }


class StackUpdates:
    """Accepts UpdateStack calls and plays their timelines in background threads."""

    def __init__(self, update_seconds: Callable[[], float], stopping: threading.Event) -> None:
        self.lock = threading.RLock()
        self._update_seconds = update_seconds
        self._stopping = stopping
        self._generation: dict[str, int] = {}  # stack id -> interventions so far
        self._running: dict[str, _Update] = {}  # stack id -> the update in progress
        self._fail_next: dict[str, str] = {}  # stack name or id -> rollback reason
        self._interrupted: dict[str, _Update] = {}  # stack id -> update frozen by set_status
        self._rollback: dict[str, Rollback] = {}  # stack id -> its rollback configuration
        self._threads: list[threading.Thread] = []

    # --- controls ---------------------------------------------------------------------

    def fail_next(self, stack_name: str, reason: str) -> None:
        with self.lock:
            self._fail_next[stack_name] = reason

    def set_status(self, stack: Stack, status: str, reason: str | None = None) -> None:
        with self.lock:
            running = self._running.get(stack.stack_id)
            if running is not None:  # ContinueUpdateRollback will restore its old values
                self._interrupted[stack.stack_id] = running
            self._intervene(stack)
            self._transition(stack, status, reason, token=None)

    def forget(self, stack: Stack) -> None:
        """The stack is being deleted: stop its timeline."""
        with self.lock:
            self._intervene(stack)

    def rollback_configuration(self, stack: Stack) -> Rollback:
        with self.lock:
            return self._rollback.get(stack.stack_id, Rollback())

    def check_alarms(self) -> None:
        """Roll back every update in progress that a trigger alarm of its stack stops."""
        with self.lock:
            for update in list(self._running.values()):
                self._watch(update)

    def join(self, timeout: float) -> None:
        for thread in list(self._threads):
            thread.join(timeout)

    # --- UpdateStack ------------------------------------------------------------------

    def update(self, account_id: str, region: str, form: Mapping[str, str]) -> str:
        """Start an update from the request's form fields; the stack id, or `Refused`."""
        with self.lock:
            stack = find_stack(account_id, region, form.get("StackName", ""))
            token = form.get("ClientRequestToken")
            running = self._running.get(stack.stack_id)
            if running is not None and token is not None and running.token == token:
                return str(stack.stack_id)  # a retried request of the update in progress
            if stack.status not in UPDATABLE:
                raise Refused(
                    f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated."
                )
            template = requested_template(stack, form, account_id, region)
            parameters = resolve_parameters(stack, template, parse_parameters(form))
            rollback = parse_rollback(form, self._rollback.get(stack.stack_id, Rollback()))
            if stack.template == template and live_parameters(stack) == parameters:
                raise Refused("No updates are to be performed.")
            self._rollback[stack.stack_id] = rollback
            setattr(stack, "rollback_configuration", rollback.rendered())  # noqa: B010
            self._start(stack, template, parameters, token, form.get("DisableRollback") == "true")
            return str(stack.stack_id)

    def _start(
        self,
        stack: Stack,
        template: str,
        parameters: dict[str, str],
        token: str | None,
        disable_rollback: bool = False,
    ) -> None:
        failure = self._fail_next.pop(stack.name, None) or self._fail_next.pop(stack.stack_id, None)
        update = _Update(stack, token, str(stack.template), live_parameters(stack), failure)
        update.disable_rollback = disable_rollback
        monitoring = self._rollback.get(stack.stack_id, Rollback()).monitoring_minutes
        update.monitor_seconds = 60.0 * monitoring
        generation = self._intervene(stack)
        self._running[stack.stack_id] = update
        # moto's serializer renders it as LastUpdatedTime; AWS sets it when an update starts.
        setattr(stack, "last_updated_time", utcnow())  # noqa: B010 - moto's Stack lacks it
        self._transition(stack, "UPDATE_IN_PROGRESS", "User Initiated", token)
        try:
            _apply(stack, template, parameters)
        except Exception as exc:  # any moto failure is a failed update, as in AWS
            update.failure = update.failure or f"Update failed: {exc}"
        if update.failure is None:
            self._launch(update, generation, SUCCESS)
            self._watch(update)  # an alarm already in ALARM stops it at once
        else:
            self._launch(update, generation, FAILURE_KEPT if disable_rollback else FAILURE)

    def _launch(self, update: _Update, generation: int, steps: tuple[Step, ...]) -> None:
        # Steps due at once are taken before the call returns (the caller holds `lock`):
        # AWS answers CancelUpdateStack or ContinueUpdateRollback with the rollback begun,
        # so a describe right after never sees the status from before the call.
        while steps and steps[0][0] == 0.0:
            _, status, action = steps[0]
            self._step(update, status, action)
            steps = steps[1:]
        thread = threading.Thread(
            target=self._play,
            args=(update, generation, steps),
            name=f"emulator-update-{update.stack.name}",
            daemon=True,
        )
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    # --- CancelUpdateStack, ContinueUpdateRollback ------------------------------------

    def cancel(self, account_id: str, region: str, form: Mapping[str, str]) -> None:
        """Roll back the update in progress, as CancelUpdateStack does."""
        with self.lock:
            stack = find_stack(account_id, region, form.get("StackName", ""))
            running = self._running.get(stack.stack_id)
            if stack.status != "UPDATE_IN_PROGRESS" or running is None:
                raise Refused("CancelUpdateStack cannot be called from current stack status")
            running.failure = "User Initiated"
            generation = self._intervene(stack)
            self._running[stack.stack_id] = running
            self._launch(running, generation, ROLLBACK_NOW)

    def continue_rollback(self, account_id: str, region: str, form: Mapping[str, str]) -> None:
        """Finish a rollback that failed (UPDATE_ROLLBACK_FAILED), as a person would ask."""
        with self.lock:
            stack = find_stack(account_id, region, form.get("StackName", ""))
            if stack.status != "UPDATE_ROLLBACK_FAILED":
                raise Refused("ContinueUpdateRollback cannot be called from current stack status")
            current = _Update(stack, None, str(stack.template), live_parameters(stack), None)
            update = self._interrupted.pop(stack.stack_id, current)
            update.failure = "User Initiated"
            generation = self._intervene(stack)
            self._running[stack.stack_id] = update
            self._launch(update, generation, ROLLBACK_NOW)

    def _watch(self, update: _Update) -> None:
        """Stop `update` when one of its stack's triggers is in ALARM or missing (the caller
        holds `lock`). Only while UPDATE_IN_PROGRESS: CloudFormation does not watch
        triggers during a rollback, nor once cleanup began."""
        stack = update.stack
        if stack.status != "UPDATE_IN_PROGRESS" or self._running.get(stack.stack_id) is not update:
            return
        for arn, _ in self._rollback.get(stack.stack_id, Rollback()).triggers:
            state = alarm_state(arn)
            if state == "ALARM":
                reason = f"Rollback triggered: alarm {arn} is in ALARM state"
            elif state is None:
                reason = f"Rollback triggered: alarm {arn} does not exist"
            else:
                continue
            update.failure = reason
            generation = self._intervene(stack)
            if update.disable_rollback:
                self._transition(stack, "UPDATE_FAILED", reason, update.token)
            else:
                self._running[stack.stack_id] = update
                self._launch(update, generation, ROLLBACK_NOW)
            return

    def _play(self, update: _Update, generation: int, steps: tuple[Step, ...]) -> None:
        started = 0.0
        hold = 0.0
        for fraction, status, action in steps:
            if status == CLEANUP:  # the monitoring time holds the update before its cleanup
                hold = update.monitor_seconds
            # Read the setting per step so a test may shorten a running update.
            delay = max(0.0, fraction * self._update_seconds() + hold - started)
            if self._stopping.wait(delay):
                return
            started += delay
            with self.lock:
                if self._generation.get(update.stack.stack_id) != generation:
                    return
                self._step(update, status, action)

    def _step(self, update: _Update, status: str, action: str | None) -> None:
        stack = update.stack
        failing = status in ("UPDATE_ROLLBACK_IN_PROGRESS", "UPDATE_FAILED")
        reason = update.failure if failing else None
        if status == "UPDATE_ROLLBACK_IN_PROGRESS":
            self._interrupted.pop(stack.stack_id, None)
        if action == _APPLY_OLD:
            _apply(stack, update.old_template, update.old_parameters)
        self._transition(stack, status, reason, update.token)
        if not status.endswith("_IN_PROGRESS"):
            self._running.pop(stack.stack_id, None)

    # --- bookkeeping ------------------------------------------------------------------

    def _intervene(self, stack: Stack) -> int:
        generation = self._generation.get(stack.stack_id, 0) + 1
        self._generation[stack.stack_id] = generation
        self._running.pop(stack.stack_id, None)
        return generation

    @staticmethod
    def _transition(stack: Stack, status: str, reason: str | None, token: str | None) -> None:
        stack.status = status
        # StackStatusReason says why a stack failed or is rolling back; AWS leaves it empty
        # for the other statuses (their reason, such as "User Initiated", is in the events).
        failing = status.endswith(("_FAILED", "ROLLBACK_IN_PROGRESS"))
        setattr(stack, "stack_status_reason", reason if failing else None)  # noqa: B010
        event = Event(
            stack_id=stack.stack_id,
            stack_name=stack.name,
            logical_resource_id=stack.name,
            physical_resource_id=stack.stack_id,
            resource_type="AWS::CloudFormation::Stack",
            resource_status=status,
            resource_status_reason=reason,
            resource_properties=None,
        )
        setattr(event, "client_request_token", token)  # noqa: B010 - typed None in moto
        stack.events.append(event)


# --- request parsing and AWS's parameter rules -------------------------------------------


def find_stack(account_id: str, region: str, name_or_id: str) -> Stack:
    backend = cloudformation_backends[account_id][region]
    try:
        return backend.get_stack(name_or_id)
    except Exception as exc:
        raise Refused(f"Stack [{name_or_id}] does not exist") from exc


def requested_template(stack: Stack, form: Mapping[str, str], account_id: str, region: str) -> str:
    """The template an UpdateStack or CreateChangeSet names: the stack's, a body or a URL."""
    if form.get("UsePreviousTemplate") == "true":
        return str(stack.template)
    if "TemplateBody" in form:
        return form["TemplateBody"]
    if "TemplateURL" in form:
        url = form["TemplateURL"]
        return str(get_stack_from_s3_url(url, account_id, get_partition(region)))
    raise Refused("Either Template URL or Template Body must be specified.")


def parse_rollback(form: Mapping[str, str], previous: Rollback) -> Rollback:
    """The stack's rollback configuration after an update with these form fields.

    Triggers left out keep the stack's; given, they replace them, and an empty list (the
    query protocol sends `RollbackConfiguration.RollbackTriggers=`) clears them.
    """
    prefix = "RollbackConfiguration.RollbackTriggers"
    members: dict[int, dict[str, str]] = {}
    for key, value in form.items():
        parts = key.split(".")
        if len(parts) == 5 and ".".join(parts[:2]) == prefix and parts[2] == "member":
            members.setdefault(int(parts[3]), {})[parts[4]] = value
    triggers = previous.triggers
    if members or prefix in form:
        given = [members[n] for n in sorted(members)]
        if len(given) > MAX_TRIGGERS:
            raise Refused(f"A stack can have at most {MAX_TRIGGERS} rollback triggers")
        for trigger in given:
            if trigger.get("Type") not in TRIGGER_TYPES or not trigger.get("Arn"):
                raise Refused(f"Rollback trigger {trigger} needs an alarm Arn and Type")
        triggers = tuple((t["Arn"], t["Type"]) for t in given)
    minutes = form.get("RollbackConfiguration.MonitoringTimeInMinutes")
    monitoring = previous.monitoring_minutes if minutes is None else int(minutes)
    if not 0 <= monitoring <= 180:
        raise Refused("MonitoringTimeInMinutes must be between 0 and 180")
    return Rollback(triggers, monitoring)


def alarm_state(arn: str) -> str | None:
    """The state of the CloudWatch alarm `arn` in moto; None when there is no such alarm."""
    parts = arn.split(":", 6)  # arn:partition:cloudwatch:region:account:alarm:name
    if len(parts) != 7 or parts[2] != "cloudwatch" or parts[5] != "alarm":
        return None
    _, _, _, region, account, _, name = parts
    alarm = cloudwatch_backends[account][region].alarms.get(name)
    return None if alarm is None or alarm.alarm_arn != arn else str(alarm.state_value)


def parse_parameters(form: Mapping[str, str]) -> list[dict[str, str]]:
    """`Parameters.member.N.Field` form fields as a list of {Field: value}, in N order."""
    return parse_members(form, "Parameters")


def parse_members(form: Mapping[str, str], name: str) -> list[dict[str, str]]:
    """`NAME.member.N.Field` form fields (a list of structures) as {Field: value}s."""
    members: dict[int, dict[str, str]] = {}
    for key, value in form.items():
        parts = key.split(".")
        if len(parts) == 4 and parts[0] == name and parts[1] == "member":
            members.setdefault(int(parts[2]), {})[parts[3]] = value
    return [members[n] for n in sorted(members)]


def parse_list(form: Mapping[str, str], name: str) -> list[str]:
    """`NAME.member.N` form fields (a list of strings), in N order."""
    members: dict[int, str] = {}
    for key, value in form.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == name and parts[1] == "member":
            members[int(parts[2])] = value
    return [members[n] for n in sorted(members)]


def resolve_parameters(stack: Stack, template: str, given: list[dict[str, str]]) -> dict[str, str]:
    """Every parameter the template declares with the value AWS would give it.

    A value wins; `UsePreviousValue` keeps the live value; a parameter left out falls back
    to the template's default (not the live value, a classic AWS surprise).
    """
    declared: dict[str, Any] = Stack.parse_template(template).get("Parameters") or {}
    unknown = [p["ParameterKey"] for p in given if p.get("ParameterKey") not in declared]
    if unknown:
        raise Refused(f"Parameters: [{', '.join(unknown)}] do not exist in the template")
    live = live_parameters(stack)
    by_key = {p["ParameterKey"]: p for p in given}
    resolved: dict[str, str] = {}
    missing: list[str] = []
    for key, declaration in declared.items():
        value = _value(key, by_key.get(key), declaration, live)
        if value is None:
            missing.append(key)
        else:
            resolved[key] = value
    if missing:
        raise Refused(f"Parameters: [{', '.join(missing)}] must have values")
    return resolved


def _value(
    key: str, given: Mapping[str, str] | None, declaration: Any, live: Mapping[str, str]
) -> str | None:
    use_previous = given is not None and given.get("UsePreviousValue") == "true"
    if given is not None and "ParameterValue" in given:
        if use_previous:
            raise Refused(
                f"Invalid input for parameter key {key}. Cannot specify usePreviousValue "
                "as true and non empty value for a parameter"
            )
        return given["ParameterValue"]
    if use_previous:
        if key not in live:
            raise Refused(
                f"Invalid input for parameter key {key}. Cannot specify "
                "usePreviousValue as true for a parameter that does not exist"
            )
        return live[key]
    default = declaration.get("Default") if isinstance(declaration, dict) else None
    return None if default is None else str(default)


def live_parameters(stack: Stack) -> dict[str, str]:
    """The stack's parameters as describe_stacks shows them: text (moto keeps numbers)."""
    return {key: _text(value) for key, value in stack.stack_parameters.items()}


def _text(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _apply(stack: Stack, template: str, parameters: dict[str, str]) -> None:
    """moto's own update, minus its events and status: resources are changed right here."""
    stack.template = template
    stack._parse_template()
    stack.resource_map.update(stack.template_dict, parameters)
    stack.output_map = stack._create_output_map()
    stack.parameters = dict(parameters)
    tag_groups(stack)


def tag_groups(stack: Stack) -> None:
    """Tag the stack's Auto Scaling groups as AWS does every resource CloudFormation makes
    (`aws:cloudformation:stack-name`, `-stack-id`, `-logical-id`); moto tags none of them,
    and replaces a group on every image change, so this runs after each create and update."""
    backend = autoscaling_backends[stack.account_id][stack.region_name]
    tags: list[dict[str, str]] = []
    for logical, resource in list(stack.resource_map._parsed_resources.items()):
        if not isinstance(resource, FakeAutoScalingGroup):
            continue
        for key, value in (
            ("aws:cloudformation:stack-name", stack.name),
            ("aws:cloudformation:stack-id", stack.stack_id),
            ("aws:cloudformation:logical-id", logical),
        ):
            tags.append(
                {
                    "ResourceId": resource.name,
                    "ResourceType": "auto-scaling-group",
                    "Key": key,
                    "Value": value,
                    "PropagateAtLaunch": "true",
                }
            )
    if tags:
        backend.create_or_update_tags(tags)
