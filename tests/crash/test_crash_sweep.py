"""Crash anywhere, resume exactly: SIGKILL `reconciler apply` at every point of a rollout.

A tracing run enumerates every (step, point, occurrence) a whole rollout passes: before and
after each AWS call, each store write (and its commit), each git command. Then, for EACH of
them, a fresh world runs the rollout to that point, the process kills itself there, and a
restarted reconciler on the same state dir must converge with exactly two stack updates,
the switch after the migration's `succeeded`, and every phase in order (crashkit.py).

Slow (minutes): `make test-slow` or `pytest -m slow tests/crash`. The figures go to
docs/reliability.md; set RECONCILER_CRASH_REPORT=<file> to have them written as JSON.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import os
import pathlib
import time
from collections.abc import Iterator

import pytest

from tests.crash import crashkit
from tests.crash.crashkit import Outcome

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
WORKERS = int(os.environ.get("RECONCILER_CRASH_WORKERS", "3"))


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[crashkit.Stage]:
    with crashkit.stage(tmp_path_factory.mktemp("crash")) as st:
        yield st


def test_every_kill_point_of_a_rollout_resumes_exactly(stage: crashkit.Stage) -> None:
    """Every enumerated kill point, none sampled: each run converges as CONTRACT 2 says."""
    started = time.monotonic()
    steps = crashkit.trace(stage)
    points = crashkit.kill_points(steps)
    outcomes: list[Outcome] = []
    failures: list[str] = []

    def run(kill: crashkit.KillPoint) -> None:
        try:
            outcomes.append(crashkit.crash_and_resume(stage, kill))
        except AssertionError as exc:  # go on: the report lists every point that fails
            failures.append(f"{kill}: {exc}")

    # Each run has its own stack, repository and state dir; the killed subprocess is the
    # slow part, so a few runs at once keep both cores busy.
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(run, points))
    report = _report(steps, points, outcomes, failures, time.monotonic() - started)
    print(json.dumps(report, indent=2))
    if os.environ.get("RECONCILER_CRASH_REPORT"):
        pathlib.Path(os.environ["RECONCILER_CRASH_REPORT"]).write_text(json.dumps(report, indent=2))
    assert not failures, "\n".join(failures)
    assert len(outcomes) == len(points)


def _report(
    steps: list[list[str]],
    points: list[crashkit.KillPoint],
    outcomes: list[Outcome],
    failures: list[str],
    seconds: float,
) -> dict[str, object]:
    recovery = sorted(o.recovery_seconds for o in outcomes) or [0.0]
    return {
        "planned_steps": len(steps),
        "workers": WORKERS,
        "aws_requests_clean_rollout": sum(
            p.startswith("aws.") and p.endswith(".before") for s in steps for p in s
        ),
        "kill_points": len(points),
        "by_kind": dict(collections.Counter(p.kind for p in points)),
        "by_step": [len(s) for s in steps],
        "runs_passed": len(outcomes),
        "failures": failures,
        "seconds_total": round(seconds, 1),
        "recovery_seconds_median": round(recovery[len(recovery) // 2], 2),
        "recovery_seconds_max": round(recovery[-1], 2),
        "recovery_steps_max": max((o.recovery_steps for o in outcomes), default=0),
        "recovery_aws_requests_max": max((o.aws_requests for o in outcomes), default=0),
        "recovery_aws_requests_median": sorted(o.aws_requests for o in outcomes)[len(outcomes) // 2]
        if outcomes
        else 0,
    }
