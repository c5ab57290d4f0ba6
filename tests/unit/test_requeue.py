"""When the daemon runs a spec's next step (requeue.next_run, scheduled by daemon.py).

An errored step (AWS access denied, an endpoint down) is retried after the active interval,
doubling per errored step in a row up to `scheduling.backoff_cap`; throttling is not a
failure and keeps the short fixed period; a step without error starts the count again.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from reconciler import catalog, daemon, engine, requeue, settings
from reconciler.aws.clients import THROTTLE_CODES
from reconciler.model import Phase, Requeue
from tests.unit import plannerkit

ACTIVE = dt.timedelta(seconds=5)
CAP = dt.timedelta(minutes=30)


def low(a: float, b: float) -> float:
    """The random source at its lowest: no jitter."""
    return a


def high(a: float, b: float) -> float:
    """The random source at its highest: the most jitter."""
    return b


def aws_error(code: str, operation: str = "DescribeStacks") -> str:
    """A step's error text for a botocore ClientError, as the engine writes it."""
    exc = ClientError({"Error": {"Code": code, "Message": "no"}}, operation)
    return f"AWS: {exc}"


DENIED = aws_error("AccessDenied")
THROTTLED = aws_error("Throttling")
DOWN = f"AWS: {EndpointConnectionError(endpoint_url='https://cloudformation.invalid')}"


# --- the pure functions ----------------------------------------------------------------


def test_error_delay_starts_at_the_active_interval_and_doubles_per_error() -> None:
    """The 1st, 2nd, 3rd, 4th errored step in a row wait 1x, 2x, 4x, 8x the active interval."""
    delays = [requeue.error_delay(n, ACTIVE, CAP, low) for n in (1, 2, 3, 4)]
    assert delays == [ACTIVE, ACTIVE * 2, ACTIVE * 4, ACTIVE * 8]


def test_error_delay_stops_at_the_cap_however_many_errors() -> None:
    """From the 10th error on (5 s x 2**9 > 30 min) the wait is the cap, without overflow."""
    assert requeue.error_delay(9, ACTIVE, CAP, low) == ACTIVE * 256
    for errors in (10, 11, 64, 10_000):
        assert requeue.error_delay(errors, ACTIVE, CAP, low) == CAP


def test_error_delay_jitter_adds_at_most_a_tenth() -> None:
    """Jitter spreads many specs on one broken account: up to 10% on top, the cap too."""
    assert requeue.error_delay(3, ACTIVE, CAP, high) == ACTIVE * 4 * 1.1
    assert requeue.error_delay(40, ACTIVE, CAP, high) == CAP * 1.1
    seeded = random.Random(7)
    for errors in range(1, 15):
        base = min(ACTIVE * 2 ** (errors - 1), CAP)
        assert base <= requeue.error_delay(errors, ACTIVE, CAP, seeded.uniform) <= base * 1.1


@pytest.mark.parametrize("code", sorted(THROTTLE_CODES))
def test_every_botocore_throttle_code_is_throttling(code: str) -> None:
    """A ClientError with any of botocore's throttle codes, past its retries, is throttling."""
    assert requeue.throttled(aws_error(code))


@pytest.mark.parametrize(
    "error",
    [
        DENIED,
        DOWN,
        aws_error("ValidationError", "UpdateStack"),
        "stack Stack1 refused the update: Throttling",  # not an AWS error text of the engine
        "AWS: suspend scaling processes: timed out",
    ],
)
def test_other_errors_are_not_throttling(error: str) -> None:
    """Access denied, no connection, a refused update: failures, not throttling."""
    assert not requeue.throttled(error)


def test_error_streak_counts_errors_holds_on_throttling_and_resets_on_success() -> None:
    """Errored steps in a row: +1 per error, unchanged by throttling, 0 after a clean step."""
    counts = []
    errors = 0
    for error in (DENIED, DOWN, THROTTLED, THROTTLED, DENIED, None, DENIED):
        errors = requeue.error_streak(errors, error)
        counts.append(errors)
    assert counts == [1, 2, 2, 2, 3, 0, 1]


# --- the whole of next_run ------------------------------------------------------------

TIMING = requeue.Timing(ACTIVE, CAP)
MINUTE = dt.timedelta(minutes=1)
FRESH = requeue.Pace()  # a spec's first step
NOW = plannerkit.T0


def result(
    requeue_: Requeue = "idle",
    phase: Phase = Phase.IN_SYNC,
    sent: Literal["sent", "noop"] | None = None,
    error: str | None = None,
) -> engine.StepResult:
    return engine.StepResult("biglearn-api", phase, "m", sent, requeue_, error)


def run(
    r: engine.StepResult,
    pace: requeue.Pace = FRESH,
    retry_at: dt.datetime | None = None,
    uniform: requeue.Uniform = low,
) -> tuple[float, requeue.Pace]:
    delay, after = requeue.next_run(r, pace, MINUTE, retry_at, NOW, TIMING, uniform)
    return delay.total_seconds(), after


@pytest.mark.parametrize(
    ("case", "step", "pace", "retry_at", "expected"),
    [
        ("idle: the spec's interval", result(), requeue.Pace(), None, (60, requeue.Pace())),
        (
            "idle ends a run of active steps and of errors",
            result(),
            requeue.Pace(3, "Migrating", 2),
            None,
            (60, requeue.Pace()),
        ),
        (
            "first active step in a phase: the active interval",
            result("active", Phase.MIGRATING),
            requeue.Pace(),
            None,
            (5, requeue.Pace(0, "Migrating", 0)),
        ),
        (
            "second active step in the same phase: 1.5x",
            result("active", Phase.MIGRATING),
            requeue.Pace(0, "Migrating", 0),
            None,
            (7.5, requeue.Pace(0, "Migrating", 1)),
        ),
        (
            "many in one phase: at most 4x",
            result("active", Phase.MIGRATING),
            requeue.Pace(0, "Migrating", 9),
            None,
            (20, requeue.Pace(0, "Migrating", 10)),
        ),
        (
            "a new phase starts the period over",
            result("active", Phase.VERIFYING),
            requeue.Pace(0, "Migrating", 9),
            None,
            (5, requeue.Pace(0, "Verifying", 0)),
        ),
        (
            "an update just sent: a quarter of it",
            result("active", Phase.MIGRATING, sent="sent"),
            requeue.Pace(),
            None,
            (1.25, requeue.Pace(0, "Migrating", 0)),
        ),
        (
            "a planned retry: at the failure's retry time",
            result("retry", Phase.FAILED),
            requeue.Pace(0, "Migrating", 3),
            NOW + dt.timedelta(minutes=7),
            (420, requeue.Pace()),
        ),
        (
            "a retry time already past: one second",
            result("retry", Phase.FAILED),
            requeue.Pace(),
            NOW - MINUTE,
            (1, requeue.Pace()),
        ),
        (
            "retry without a failure to wait for: the interval",
            result("retry", Phase.FAILED),
            requeue.Pace(),
            None,
            (60, requeue.Pace()),
        ),
        (
            "an error: backoff per error, the rollout's streak kept",
            result("active", Phase.MIGRATING, error=DENIED),
            requeue.Pace(2, "Migrating", 3),
            None,
            (20, requeue.Pace(3, "Migrating", 3)),
        ),
        (
            "throttled: twice the active interval, the count unchanged",
            result("active", Phase.MIGRATING, error=THROTTLED),
            requeue.Pace(2, "Migrating", 3),
            None,
            (10, requeue.Pace(2, "Migrating", 3)),
        ),
    ],
)
def test_next_run(
    case: str,
    step: engine.StepResult,
    pace: requeue.Pace,
    retry_at: dt.datetime | None,
    expected: tuple[float, requeue.Pace],
) -> None:
    """Each kind of step waits its own way; the pace carried on is written out by hand."""
    assert run(step, pace, retry_at) == expected, case


def test_active_waits_never_pass_the_specs_interval() -> None:
    """A spec polled every 10 s in its idle state is not polled less often mid-rollout."""
    delay, _ = requeue.next_run(
        result("active", Phase.MIGRATING),
        requeue.Pace(0, "Migrating", 5),
        dt.timedelta(seconds=10),
        None,
        NOW,
        TIMING,
        low,
    )
    assert delay == dt.timedelta(seconds=10)


def test_idle_and_error_waits_are_jittered_by_at_most_a_tenth() -> None:
    assert run(result(), uniform=high)[0] == 66
    assert run(result(error=DENIED), uniform=high)[0] == 5.5


# --- the daemon ------------------------------------------------------------------------


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[daemon.Daemon]:
    """A daemon built (never started) on a state dir, with jitter at zero."""
    monkeypatch.setattr(random, "uniform", low)
    conf = settings.Settings(
        state_dir=tmp_path / "state",
        scheduling=settings.SchedulingSettings(active_interval=ACTIVE, backoff_cap=CAP),
    )
    d = daemon.Daemon(conf)
    yield d
    d.store.close()
    d._lock_file.release()


def loaded_spec(interval: str = "1m") -> catalog.LoadedSpec:
    deployment = plannerkit.deployment(interval=interval)
    return catalog.LoadedSpec(deployment, "deploy-specs/a.yaml", plannerkit.REV, stale=False)


def step(error: str | None) -> engine.StepResult:
    return engine.StepResult("biglearn-api", Phase.IN_SYNC, "m", None, "idle", error)


def delays(d: daemon.Daemon, loaded: catalog.LoadedSpec, *errors: str | None) -> list[float]:
    """The daemon's wait in seconds after each of a run of steps with these errors."""
    now = plannerkit.T0
    return [d._delay(loaded, step(e), now).total_seconds() for e in errors]


def test_daemon_backs_off_errored_steps_past_the_spec_interval(built: daemon.Daemon) -> None:
    """A spec with a 1m interval on a broken account: 5 s, 10 s, ... 160 s, 320 s: the
    interval does not cap it, so a broken account costs few calls."""
    waits = delays(built, loaded_spec("1m"), *[DENIED] * 7)
    assert waits == [5, 10, 20, 40, 80, 160, 320]


def test_daemon_keeps_the_short_period_while_throttled(built: daemon.Daemon) -> None:
    """Throttling between errors: twice the active interval, and the backoff does not grow."""
    waits = delays(built, loaded_spec(), DENIED, DENIED, THROTTLED, THROTTLED, DENIED)
    assert waits == [5, 10, 10, 10, 20]


def test_daemon_starts_over_after_a_step_without_error(built: daemon.Daemon) -> None:
    """A clean step (the idle interval, 60 s) resets the count: the next error waits 5 s."""
    waits = delays(built, loaded_spec("1m"), DENIED, DENIED, DENIED, None, DENIED)
    assert waits == [5, 10, 20, 60, 5]
