"""Act on one stack: send one UpdateStack, the only write the daemon makes to a stack.

Rules of this file:
- The previous template, always; the daemon changes parameters, never templates.
- Every parameter of the update is sent: a value, or UsePreviousValue (CloudFormation
  resets a parameter left out to its template default).
- "No updates are to be performed." is "noop", not an error. A token CloudFormation has
  already seen means this very request reached it before (a retry): "sent".
- Any other refusal raises UpdateRefused(code, message) for the engine to record.
- The ClientRequestToken is the one the planner derived (planner.client_request_token),
  never random: a retried step cannot start a second update.
- Every update states its RollbackConfiguration, even with no triggers: CloudFormation keeps
  a stack's triggers for later updates unless an update says otherwise, so a switch's alarms
  would otherwise also roll back the next migrate or scale update. Monitoring time 0: the
  daemon watches the alarms itself after the update (rollout.bake).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from botocore.exceptions import ClientError

from reconciler import model, spec
from reconciler.aws.clients import Clients

if TYPE_CHECKING:
    from mypy_boto3_cloudformation.literals import CapabilityType
    from mypy_boto3_cloudformation.type_defs import (
        ParameterTypeDef,
        RollbackConfigurationTypeDef,
        UpdateStackInputTypeDef,
    )

# Harmless when the template needs none; needed when it names IAM resources or macros.
CAPABILITIES: list[CapabilityType] = [
    "CAPABILITY_IAM",
    "CAPABILITY_NAMED_IAM",
    "CAPABILITY_AUTO_EXPAND",
]
NO_UPDATES = "No updates are to be performed"
ALARM_TRIGGER = "AWS::CloudWatch::Alarm"
BUSY_STATE = "_IN_PROGRESS state"


class UpdateRefused(Exception):
    """CloudFormation refused the update (stack busy, bad parameter, no permission...).
    `busy`: the stack was in an operation (not a failure: the next step waits for it)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        # AWS gives no code of its own for it: "Stack:... is in UPDATE_IN_PROGRESS state
        # and can not be updated." This edge reads AWS's wording so nothing above it does.
        self.busy = BUSY_STATE in message


def send_update(
    clients: Clients, sp: spec.Spec, update: model.StackUpdate
) -> Literal["sent", "noop"]:
    """Send `update` to the spec's stack; "noop" when the stack already has those values."""
    cfn = clients.cloudformation(sp.region, sp.role_arn)
    try:
        cfn.update_stack(**request(sp, update))
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "Unknown"), error.get("Message", str(exc))
        if code == "ValidationError" and NO_UPDATES in message:
            return "noop"
        if code == "TokenAlreadyExistsException":
            return "sent"
        raise UpdateRefused(code, message) from exc
    return "sent"


def request(sp: spec.Spec, update: model.StackUpdate) -> UpdateStackInputTypeDef:
    """The UpdateStack request for `update`."""
    sent: UpdateStackInputTypeDef = {
        "StackName": sp.stack_name,
        "UsePreviousTemplate": True,
        "Parameters": parameters(update),
        "Capabilities": CAPABILITIES,
        "ClientRequestToken": update.token,
        "RollbackConfiguration": rollback_configuration(update),
    }
    if update.disable_rollback:
        # Only when asked: a migration the old image cannot read must not be undone by a
        # rollback; left out, the stack rolls back on failure as it always did.
        sent["DisableRollback"] = True
    return sent


def parameters(update: model.StackUpdate) -> list[ParameterTypeDef]:
    """The update's parameters as UpdateStack takes them, None as UsePreviousValue."""
    return [
        {"ParameterKey": name, "UsePreviousValue": True}
        if value is None
        else {"ParameterKey": name, "ParameterValue": value}
        for name, value in update.parameters
    ]


def rollback_configuration(update: model.StackUpdate) -> RollbackConfigurationTypeDef:
    """The update's alarms as rollback triggers; an empty list clears the stack's."""
    return {
        "RollbackTriggers": [{"Arn": arn, "Type": ALARM_TRIGGER} for arn in update.triggers],
        "MonitoringTimeInMinutes": 0,
    }


def set_scaling(clients: Clients, sp: spec.Spec, change: model.ScalingChange) -> None:
    """Suspend or resume the named Auto Scaling processes of the API group."""
    asg = clients.autoscaling(sp.region, sp.role_arn)
    processes = sorted(change.processes)
    if change.action == "suspend":
        asg.suspend_processes(AutoScalingGroupName=change.group, ScalingProcesses=processes)
    else:
        asg.resume_processes(AutoScalingGroupName=change.group, ScalingProcesses=processes)
