"""Three crash points of the sweep (test_crash_sweep.py) in the default suite.

Each kills `reconciler apply` by SIGKILL at one named point and restarts it on the same
state dir; the rollout must still converge with exactly two stack updates, the switch after
the migration's `succeeded`, and its phases in order (crashkit.check_converged).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.crash import crashkit
from tests.crash.crashkit import KillPoint


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[crashkit.Stage]:
    with crashkit.stage(tmp_path_factory.mktemp("crash-quick")) as st:
        yield st


@pytest.mark.parametrize(
    "kill",
    [
        # Rollout and pending update recorded, phase 1 not sent yet: resend, same token.
        KillPoint(0, "store.apply.after", 1),
        # The switch reached CloudFormation, the process died before it returned.
        KillPoint(1, "aws.UpdateStack.after", 1),
        # The first git fetch into the state dir's cache, before its head was read.
        KillPoint(0, "git.fetch.after", 1),
    ],
    ids=str,
)
def test_a_kill_at_a_named_point_resumes_exactly(stage: crashkit.Stage, kill: KillPoint) -> None:
    """Killed at `kill`, restarted: the rollout converges as if nothing had happened."""
    outcome = crashkit.crash_and_resume(stage, kill)
    assert outcome.recovery_steps >= 1
