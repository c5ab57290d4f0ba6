"""When a spec's next step runs, from the step just taken: one pure function, `next_run`.

Rules of this file:
- Pure: no clock, no random source, no scheduler; the daemon passes them in and keeps the
  returned Pace for the spec's next step.
- The distinct waits (Flux's requeue intervals): a rollout moving comes back soon, and
  later each step it waits in the same phase; a planned retry at the failure's retry time;
  an errored step after a backoff growing per error in a row (throttling aside, which is
  no failure); idle at the spec's interval, jittered so many daemons do not poll in step.
- A new revision or a `sync` runs the step at once whatever this says (the daemon's job).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable

from reconciler import engine
from reconciler.aws.clients import THROTTLE_CODES

JITTER = 0.1  # share of a period added at random, so many daemons do not poll in step
# While a rollout waits in one phase, each further poll comes 1.5x later, up to 4x the
# active interval: a 3-minute instance replacement costs ~10 polls, not 36, and a phase
# change (the next thing to act on) resets the period.
ACTIVE_BACKOFF, ACTIVE_CAP = 1.5, 4.0
SENT_LOOK = 4.0  # after sending an update, the next step comes this many times sooner
RETRY_FLOOR = dt.timedelta(seconds=1)  # a retry time already past still waits this long
# botocore's ClientError text, which the engine passes on as "AWS: <error>".
_AWS_ERROR_CODE = re.compile(r"An error occurred \((\w+)\)")
Uniform = Callable[[float, float], float]  # random.uniform, or a fixed stand-in in tests


@dataclasses.dataclass(frozen=True)
class Timing:
    """The settings the waits come from (scheduling.activeInterval, scheduling.backoffCap)."""

    active_interval: dt.timedelta
    backoff_cap: dt.timedelta


@dataclasses.dataclass(frozen=True)
class Pace:
    """What the timing remembers of a spec's steps so far, carried to its next step."""

    errors: int = 0  # errored steps in a row (error_streak)
    phase: str = ""  # the phase of the current run of active steps; "" outside one
    waits: int = 0  # active steps in `phase` before the last one


def next_run(
    result: engine.StepResult,
    pace: Pace,
    interval: dt.timedelta,
    retry_at: dt.datetime | None,
    now: dt.datetime,
    timing: Timing,
    uniform: Uniform,
) -> tuple[dt.timedelta, Pace]:
    """How long after `now` the spec's next step runs, and the pace to carry to it.

    `interval` is the spec's; `retry_at` its failure's next retry time, if it has one."""
    errors = error_streak(pace.errors, result.error)
    if result.error is not None:  # an errored step leaves the rollout's streak as it was
        paced = dataclasses.replace(pace, errors=errors)
        if throttled(result.error):
            return min(interval, timing.active_interval * 2), paced
        return error_delay(errors, timing.active_interval, timing.backoff_cap, uniform), paced
    if result.requeue == "active":
        phase = str(result.phase)
        waits = pace.waits + 1 if pace.phase == phase else 0
        delay = timing.active_interval * min(ACTIVE_BACKOFF**waits, ACTIVE_CAP)
        if result.sent == "sent":
            # Look again within a quarter tick: an update that settles at once (a
            # parameter-only change CloudFormation finds nothing to replace for, or an
            # emulator) moves on then; one still in progress costs one shared read.
            delay = delay / SENT_LOOK
        return min(delay, interval), Pace(0, phase, waits)
    if result.requeue == "retry" and retry_at is not None:
        return max(retry_at - now, RETRY_FLOOR), Pace()
    return jittered(interval, uniform), Pace()


def throttled(error: str) -> bool:
    """A step's error that is AWS throttling past botocore's retries: the account works and
    asks for fewer calls, which is no failure to back off from.

    Read from the text because engine.StepResult carries only the text; a `throttled` field
    set where the engine catches the ClientError would be better than parsing it here."""
    match = _AWS_ERROR_CODE.search(error) if error.startswith("AWS: ") else None
    return match is not None and match.group(1) in THROTTLE_CODES


def error_streak(previous: int, error: str | None) -> int:
    """Errored steps in a row once this step is counted: a step without error resets the
    count, a throttled one leaves it as it was."""
    if error is None:
        return 0
    return previous if throttled(error) else previous + 1


def error_delay(
    errors: int, active_interval: dt.timedelta, cap: dt.timedelta, uniform: Uniform
) -> dt.timedelta:
    """The wait after the `errors`-th errored step in a row: the active interval, doubled for
    each error before it, at most `cap` (then jittered); a broken account costs little.
    The spec's interval does not cap it."""
    doublings = min(max(errors - 1, 0), 62)  # 2**62 periods pass any cap; no overflow
    seconds = min(active_interval.total_seconds() * 2.0**doublings, cap.total_seconds())
    return jittered(dt.timedelta(seconds=seconds), uniform)


def jittered(period: dt.timedelta, uniform: Uniform) -> dt.timedelta:
    """`period` plus up to JITTER of it at random."""
    return period * (1 + uniform(0, JITTER))
