"""When the daemon runs a spec's next step after a step that errored (daemon.py).

An errored step (AWS access denied, an endpoint down) is retried after the active interval,
doubling per errored step in a row up to `scheduling.backoff_cap`; throttling is not a
failure and keeps the short fixed period; a step without error starts the count again.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from reconciler import catalog, daemon, engine, settings
from reconciler.aws.clients import THROTTLE_CODES
from reconciler.model import Phase
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
    delays = [daemon.error_delay(n, ACTIVE, CAP, low) for n in (1, 2, 3, 4)]
    assert delays == [ACTIVE, ACTIVE * 2, ACTIVE * 4, ACTIVE * 8]


def test_error_delay_stops_at_the_cap_however_many_errors() -> None:
    """From the 10th error on (5 s x 2**9 > 30 min) the wait is the cap, without overflow."""
    assert daemon.error_delay(9, ACTIVE, CAP, low) == ACTIVE * 256
    for errors in (10, 11, 64, 10_000):
        assert daemon.error_delay(errors, ACTIVE, CAP, low) == CAP


def test_error_delay_jitter_adds_at_most_a_tenth() -> None:
    """Jitter spreads many specs on one broken account: up to 10% on top, the cap too."""
    assert daemon.error_delay(3, ACTIVE, CAP, high) == ACTIVE * 4 * 1.1
    assert daemon.error_delay(40, ACTIVE, CAP, high) == CAP * 1.1
    seeded = random.Random(7)
    for errors in range(1, 15):
        base = min(ACTIVE * 2 ** (errors - 1), CAP)
        assert base <= daemon.error_delay(errors, ACTIVE, CAP, seeded.uniform) <= base * 1.1


@pytest.mark.parametrize("code", sorted(THROTTLE_CODES))
def test_every_botocore_throttle_code_is_throttling(code: str) -> None:
    """A ClientError with any of botocore's throttle codes, past its retries, is throttling."""
    assert daemon.throttled(aws_error(code))


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
    assert not daemon.throttled(error)


def test_error_streak_counts_errors_holds_on_throttling_and_resets_on_success() -> None:
    """Errored steps in a row: +1 per error, unchanged by throttling, 0 after a clean step."""
    counts = []
    errors = 0
    for error in (DENIED, DOWN, THROTTLED, THROTTLED, DENIED, None, DENIED):
        errors = daemon.error_streak(errors, error)
        counts.append(errors)
    assert counts == [1, 2, 2, 2, 3, 0, 1]


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
