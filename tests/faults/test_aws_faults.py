"""AWS faults injected in the emulator, met by the Engine in-process on a test clock.

Each test holds one outcome a person relies on: the phase the spec ends in (Failed with
backoff, Blocked with a message that says what to do), the metric and the log line that show
it, and a bounded number of AWS calls over many steps (no retry storm), counted both by the
daemon's `reconciler_aws_requests_total` and by the emulator's server-side request count.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from structlog.testing import capture_logs

from reconciler import engine
from reconciler.aws import clients as aws_clients
from reconciler.embedded import MigrationWorker
from reconciler.model import Phase
from tests.faults.conftest import LOCATION, NAME, STACK, FaultWorld, loaded_spec

STEPS = 10  # steps a test watches for calls that should not happen
SECONDS = dt.timedelta(seconds=1)


def settle(world: FaultWorld) -> None:
    """Wait (by polling) until the stack's update in progress, if any, has ended."""
    world.emulator.wait_settled(STACK)


def drive(world: FaultWorld, done: Any, steps: int = 40, **spec: Any) -> engine.StepResult:
    """Step until `done(result)`, letting each update settle; the last result."""
    result = world.step(**spec)
    for _ in range(steps):
        if done(result):
            return result
        settle(world)
        result = world.step(**spec)
    raise AssertionError(f"not done after {steps} steps: {result}")


def steps_entries(entries: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """Log entries of the engine whose message or error mentions `text`."""
    return [
        e for e in entries if text in str(e.get("message", "")) or text in str(e.get("error", ""))
    ]


def in_sync_on(image: str) -> Any:
    return lambda r: r.phase == Phase.IN_SYNC and image in r.message


# --- throttling, 5xx, timeouts ----------------------------------------------------------


@pytest.mark.slow
def test_a_rollout_under_30_percent_throttling_converges_with_one_update_per_phase(
    fault_world: FaultWorld,
) -> None:
    """With 30% of CloudFormation calls answered `Throttling`, the rollout still converges;
    each phase's UpdateStack reaches the stack once, and calls per step stay bounded."""
    w = fault_world
    w.emulator.faults.throttle(0.3)
    with MigrationWorker(w.emulator, STACK, LOCATION, steps=1, step_seconds=0.05):
        steps = 0

        def done(r: engine.StepResult) -> bool:
            nonlocal steps
            steps += 1
            return r.phase == Phase.IN_SYNC and w.live()["LcImageId"] == w.new

        drive(w, done, steps=80)
    assert w.emulator.faults.injected > 0
    assert w.aws_calls(result="throttled") > 0
    updates = _update_starts(w)
    assert updates == 2, f"{updates} stack updates for one rollout (migrate + switch)"
    per_step = w.aws_calls() / steps
    assert per_step < 12, f"{per_step:.1f} AWS calls per step over {steps} steps"


def test_a_cloudformation_outage_errors_each_step_once_and_recovers(
    fault_world: FaultWorld,
) -> None:
    """Every CloudFormation call answered 500: each step fails fast (botocore's 2 attempts
    of one call, nothing more), counts `reconcile_total{result="error"}`, logs the error,
    keeps its phase; once the endpoint answers, the next step is InSync."""
    w = fault_world
    assert w.step(w.old).phase == Phase.IN_SYNC
    w.emulator.faults.server_errors(1.0)
    served = w.served("DescribeStacks")
    with capture_logs() as entries:
        results = [w.step(w.old) for _ in range(STEPS)]
    assert all(r.error and "InternalFailure" in r.error for r in results)
    assert {r.phase for r in results} == {Phase.IN_SYNC}  # the last known phase, unchanged
    assert w.served("DescribeStacks") - served <= 2 * STEPS
    assert w.sample("reconciler_reconcile_total", name=NAME, result="error") == STEPS
    assert len(steps_entries(entries, "InternalFailure")) == STEPS
    w.emulator.faults.clear()
    recovered = w.step(w.old)
    assert recovered.phase == Phase.IN_SYNC and recovered.error is None


def test_an_html_error_page_errors_the_step_and_the_next_step_recovers(
    fault_world: FaultWorld,
) -> None:
    """A proxy's HTML page where AWS's XML was due: botocore raises a parser error that is
    no BotoCoreError; the step reports it as an AWS error instead of raising it."""
    w = fault_world
    assert w.step(w.old).phase == Phase.IN_SYNC
    w.emulator.faults.html_pages(1.0)
    result = w.step(w.old)
    assert result.error and "Unable to parse response" in result.error
    assert result.phase == Phase.IN_SYNC
    assert w.sample("reconciler_reconcile_total", name=NAME, result="error") == 1
    w.emulator.faults.clear()
    assert w.step(w.old).error is None


def test_an_endpoint_that_stops_answering_times_out_within_the_read_timeout(
    fault_world: FaultWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls that hang (no answer within the read timeout) end the step with an error in
    bounded time, two attempts each; the step never waits on AWS longer than that."""
    w = fault_world
    monkeypatch.setattr(aws_clients, "READ_TIMEOUT", 0.3)
    eng = w.new_engine(max_attempts=2)
    w.emulator.faults.stall(1.5, 1.0)
    served = w.served("DescribeStacks")
    result = eng.step(loaded_spec(w.old))
    assert result.error is not None and "timeout" in result.error.lower()
    assert w.served("DescribeStacks") - served == 2
    assert w.aws_calls(operation="DescribeStacks", result="error") == 2
    w.emulator.faults.clear()
    assert eng.step(loaded_spec(w.old)).phase == Phase.IN_SYNC


# --- failures that back off -------------------------------------------------------------


def test_an_update_that_rolls_back_is_held_until_retry(
    fault_world: FaultWorld,
) -> None:
    """A phase-1 update that rolls back: Failed with the stack's reason, held (issue 13:
    CloudFormation's verdict is not retried by itself): no UpdateStack however often it
    steps or however long it waits; `retry` sends it again. rollouts_total{failed} and the
    log line say so."""
    w = fault_world
    reason = "Embedded failure: MigrationAsg did not stabilize"
    w.emulator.fail_next_update(STACK, reason)
    with capture_logs() as entries:
        failed = drive(w, lambda r: r.phase == Phase.FAILED)
    assert "rolled back" in failed.message and reason in failed.message
    assert "attempt 1 failed, held until a new revision or `reconciler retry`" in failed.message
    assert steps_entries(entries, "rolled back")
    assert w.sample("reconciler_rollouts_total", name=NAME, result="failed") == 1
    sent = w.served("UpdateStack")
    for _ in range(STEPS):
        w.advance(dt.timedelta(hours=1))
        assert w.step().phase == Phase.FAILED
    assert w.served("UpdateStack") == sent, "an update was sent while held"
    failure = w.store.load(NAME).failure
    assert failure is not None
    assert w.store.retry(NAME, failure.at)  # due at once: the clock is hours past it
    retried = w.step()
    assert retried.phase == Phase.MIGRATING and retried.sent == "sent"


def test_a_migration_that_never_writes_its_record_fails_at_its_timeout_and_stops_the_group(
    fault_world: FaultWorld,
) -> None:
    """No migration record ever: Migrating (waiting, with bounded calls per step) until
    migration.timeout, then Failed with the reason, and the migration group is stopped."""
    w = fault_world
    drive(
        w, lambda r: r.phase == Phase.MIGRATING and "waiting for the migration record" in r.message
    )
    calls = w.aws_calls()
    for _ in range(STEPS):
        w.advance(dt.timedelta(minutes=2))
        assert w.step().phase == Phase.MIGRATING
    per_step = (w.aws_calls() - calls) / STEPS
    assert per_step <= 12, f"{per_step:.1f} AWS calls per waiting step"
    w.advance(dt.timedelta(minutes=11))
    with capture_logs() as entries:
        failed = w.step()
    assert failed.phase == Phase.FAILED and failed.sent == "sent"
    assert "did not succeed within 30m" in failed.message
    assert steps_entries(entries, "did not succeed within 30m")
    settle(w)
    assert w.live()["MigrationDesiredCapacity"] == "0"
    assert w.sample("reconciler_rollouts_total", name=NAME, result="failed") == 1


# --- states that need a person ----------------------------------------------------------


def test_a_stack_stuck_in_update_rollback_failed_is_blocked_and_never_updated(
    fault_world: FaultWorld,
) -> None:
    """UPDATE_ROLLBACK_FAILED: Blocked with a message naming the state, the stack's reason
    and what a person does (continue-update-rollback); no update however long it steps,
    one log line (not one per step); once a person fixes the stack the rollout proceeds."""
    w = fault_world
    w.emulator.set_stack_status(STACK, "UPDATE_ROLLBACK_FAILED", "Asg1 failed to roll back")
    with capture_logs() as entries:
        results = []
        for _ in range(STEPS):
            results.append(w.step())
            w.advance(dt.timedelta(hours=1))
    blocked = results[0]
    assert {r.phase for r in results} == {Phase.BLOCKED}
    assert "UPDATE_ROLLBACK_FAILED" in blocked.message
    assert "Asg1 failed to roll back" in blocked.message
    assert "continue-update-rollback" in blocked.message
    assert w.served("UpdateStack") == 0
    assert len(steps_entries(entries, "UPDATE_ROLLBACK_FAILED")) == 1
    assert (
        w.sample(
            "reconciler_stack_info",
            name=NAME,
            stack=STACK,
            region="us-east-1",
            revision="f" * 40,
            phase="Blocked",
            desired_image=w.new,
            live_image=w.old,
        )
        == 1
    )
    w.emulator.client("cloudformation").continue_update_rollback(StackName=STACK)
    settle(w)
    assert w.step().phase == Phase.MIGRATING


def test_a_stack_deleted_under_the_daemon_is_blocked_with_what_to_do(
    fault_world: FaultWorld,
) -> None:
    """A managed stack deleted by someone else: Blocked ("not found ... create it, or fix
    spec.stackName"), never created or updated, one describe per step."""
    w = fault_world
    assert w.step(w.old).phase == Phase.IN_SYNC
    w.emulator.delete_stack(STACK)
    before = w.aws_calls()
    with capture_logs() as entries:
        results = [w.step(w.old) for _ in range(STEPS)]
    assert {r.phase for r in results} == {Phase.BLOCKED}
    assert "not found in us-east-1: create it, or fix spec.stackName" in results[0].message
    assert w.served("UpdateStack") == 0 and w.served("CreateStack") == 1  # the fixture's
    assert (w.aws_calls() - before) / STEPS <= 3
    assert len(steps_entries(entries, "not found")) == 1


# --- helpers ----------------------------------------------------------------------------


def _update_starts(w: FaultWorld) -> int:
    # Ten attempts: the faults injected for the daemon must not fail the test's own read.
    cfn = w.emulator.client("cloudformation", attempts=10)
    events = cfn.describe_stack_events(StackName=STACK)["StackEvents"]
    return sum(
        1
        for e in events
        if e["ResourceType"] == "AWS::CloudFormation::Stack"
        and e["ResourceStatus"] == "UPDATE_IN_PROGRESS"
    )
