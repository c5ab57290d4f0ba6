"""Reason codes: the closed set of reasons a decision is taken and a failure is recorded.

Rules of this file:
- Like the reasons of Flux's conditions, a code is a stable name a program may match on;
  the message next to it is for people and may change wording at any time.
- Transitions, notification kinds, titles, metric labels and status derive from codes,
  never from a message. `legacy_failure_code` is the one place that reads a message: it
  gives the code of a failure stored before failures carried codes.
- Pure: standard library only, so that model and planner may import it.
- Adding a code: here, in docs/contract.md (code, phase, meaning), and in the rule that
  decides it.
"""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    """Why a step decided what it decided (docs/contract.md lists phase and meaning)."""

    # Blocked: something a person must fix before the daemon can act.
    MISSING_STACK = "missing_stack"
    STACK_BROKEN = "stack_broken"
    UNKNOWN_STACK_STATUS = "unknown_stack_status"
    BAD_PARAMETER_NAMES = "bad_parameter_names"
    RESOURCE_PROBLEM = "resource_problem"
    MISSING_ALARM = "missing_alarm"
    ROLLBACK_UNSAFE = "rollback_unsafe"  # failed after a migration the old image cannot read
    CHANGE_REFUSED = "change_refused"  # the change set would replace or remove a resource
    DRIFTED = "drifted"  # rollout.onDrift hold: a managed group changed outside CloudFormation
    # Paused.
    PAUSED_IN_SPEC = "paused_in_spec"
    PAUSED_BY_OPERATOR = "paused_by_operator"
    # Waiting on something else.
    BUSY_FOREIGN = "busy_foreign"
    UPDATE_DEFERRED = "update_deferred"
    READING = "reading"
    AWAITING_UPSTREAM = "awaiting_upstream"
    BAKING = "baking"
    OUTSIDE_WINDOW = "outside_window"
    FLEET_TURN = "fleet_turn"  # a fleet member waits for its step or a free slot
    FLEET_HALTED = "fleet_halted"
    ALARM_HOLDING = "alarm_holding"  # an alarm of rollout.alarms is in ALARM
    CHECKING_CHANGES = "checking_changes"  # a change set says what the update would touch
    # A rollout under way.
    UPDATE_IN_PROGRESS = "update_in_progress"
    MIGRATING = "migrating"
    AWAITING_MIGRATION = "awaiting_migration"
    AWAITING_APPROVAL = "awaiting_approval"
    SUSPENDING_SCALING = "suspending_scaling"
    SWITCHING = "switching"
    APPLYING_PARAMETERS = "applying_parameters"
    VERIFYING = "verifying"
    BAKING_ALARMS = "baking_alarms"  # healthy on the image; rollout.bake watches the alarms
    # Done.
    IN_SYNC = "in_sync"
    ROLLOUT_SUCCEEDED = "rollout_succeeded"
    # Failed: the codes a Failure carries (FAILURES), and waiting out its backoff.
    MIGRATION_FAILED = "migration_failed"
    MIGRATION_TIMED_OUT = "migration_timed_out"
    UPDATE_ROLLED_BACK = "update_rolled_back"
    UPDATE_TIMED_OUT = "update_timed_out"
    UPDATE_REFUSED = "update_refused"
    UNHEALTHY = "unhealthy"
    ROLLED_BACK = "rolled_back"
    ALARM_IN_BAKE = "alarm_in_bake"
    BACKING_OFF = "backing_off"


# The codes a recorded failure (model.Failure.code) may carry.
FAILURES: frozenset[Reason] = frozenset(
    {
        Reason.MIGRATION_FAILED,
        Reason.MIGRATION_TIMED_OUT,
        Reason.UPDATE_ROLLED_BACK,
        Reason.UPDATE_TIMED_OUT,
        Reason.UPDATE_REFUSED,
        Reason.UNHEALTHY,
        Reason.ROLLED_BACK,
        Reason.ALARM_IN_BAKE,
        Reason.ROLLBACK_UNSAFE,
        Reason.CHANGE_REFUSED,
    }
)

# Wording of the failure messages of versions that stored no code, in the order they are
# tried: a refusal quotes AWS, which may say anything; an automatic rollback's message
# begins with the failed verification's.
_LEGACY: tuple[tuple[str, Reason], ...] = (
    ("update refused", Reason.UPDATE_REFUSED),
    ("rolled the API group back", Reason.ROLLED_BACK),
    ("API group not healthy", Reason.UNHEALTHY),
    ("update rolled back", Reason.UPDATE_ROLLED_BACK),
    ("for longer than", Reason.UPDATE_TIMED_OUT),
)


def legacy_failure_code(text: str) -> Reason:
    """The code of a failure stored before failures had codes, read from its message.
    Only for migrating stored records: new failures carry their code from the planner."""
    if text.startswith("migration for "):
        head = text.split(":", 1)[0]  # after the colon comes the record's own detail
        timed_out = "did not succeed within" in head
        return Reason.MIGRATION_TIMED_OUT if timed_out else Reason.MIGRATION_FAILED
    for fragment, code in _LEGACY:
        if fragment in text:
            return code
    return Reason.UPDATE_REFUSED  # the one failure whose wording came from elsewhere
