"""`reconciler demo --scenario S` as a user runs it: exit 0 and the line that says what held.

The four scenarios are independent processes (each its own emulator, repository and
daemon, on ports of its own), so they all start together when the first test asks and each
test waits for its own: the set costs about the slowest scenario, not the sum.
"""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import clean_env, reconciler_command

# Four demo processes at once, about a minute of CPU: `make test-slow` (CI runs it).
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TIMEOUT = 150.0  # seconds a scenario may take here, all four sharing two cores
HAPPY_LIMIT = 90.0


@dataclasses.dataclass
class Run:
    proc: subprocess.Popen[bytes]
    output: pathlib.Path
    started: float
    elapsed: float | None = None

    def finish(self) -> tuple[int, str, float]:
        """Exit code, output and wall time, waiting up to TIMEOUT from the start."""
        if self.elapsed is None:
            left = max(1.0, TIMEOUT - (time.monotonic() - self.started))
            try:
                self.proc.wait(timeout=left)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.elapsed = time.monotonic() - self.started
        text = self.output.read_text(encoding="utf-8", errors="replace")
        return self.proc.returncode, text, self.elapsed


SCENARIOS = ("happy", "migration-fails", "update-rolls-back", "paused", "fleet", "bump")


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    """Every scenario started at once; each is killed at the end if still running."""
    tmp = tmp_path_factory.mktemp("demo")
    runs: dict[str, Run] = {}
    for scenario in SCENARIOS:
        output = tmp / f"{scenario}.log"
        with output.open("wb") as out:
            proc = subprocess.Popen(
                [*reconciler_command(), "demo", "--scenario", scenario, "--timeout", "120"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=clean_env(),
                cwd=tmp,
            )
        runs[scenario] = Run(proc, output, time.monotonic())
    yield runs
    for run in runs.values():
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait(timeout=10)


def _finished(demos: dict[str, Run], scenario: str) -> tuple[str, float]:
    code, text, elapsed = demos[scenario].finish()
    assert code == 0, f"demo {scenario} exited {code}:\n{text}"
    return text, elapsed


def test_happy_demo_converges_within_90_seconds(demos: dict[str, Run]) -> None:
    """The happy scenario merges a bump, migrates, switches, and says it converged."""
    text, elapsed = _finished(demos, "happy")
    assert "rollout converged" in text
    assert "Migrating" in text and "InSync" in text
    assert "history: " in text and ": succeeded" in text
    assert elapsed < HAPPY_LIMIT, f"the happy demo took {elapsed:.0f}s"


def test_migration_fails_demo_holds_the_api_group(demos: dict[str, Run]) -> None:
    """A failed migration ends the rollout as failed; the API group keeps the old image."""
    text, _ = _finished(demos, "migration-fails")
    assert "held the API group" in text
    assert "Failed" in text


def test_update_rolls_back_demo_records_the_rollback(demos: dict[str, Run]) -> None:
    """CloudFormation rolls the switch back; the daemon records the failure."""
    text, _ = _finished(demos, "update-rolls-back")
    assert "rolled the switch back" in text
    assert "Failed" in text


def test_paused_demo_changes_nothing_until_resumed(demos: dict[str, Run]) -> None:
    """The bump merged with `paused` set moves nothing; clearing it runs the rollout."""
    text, _ = _finished(demos, "paused")
    assert "nothing moved while paused" in text
    assert "Paused" in text


def test_fleet_demo_halts_after_the_canary_and_touches_no_other_stack(
    demos: dict[str, Run],
) -> None:
    """The canary's alarm fires in its bake: it rolls back, the fleet halts, four untouched."""
    text, _ = _finished(demos, "fleet")
    assert "fleet api step 2 waits for step 1" in text
    assert "went into ALARM during the bake" in text
    assert "fleet api halted" in text
    assert "the other four stacks were never touched: True" in text


def test_bump_demo_opens_a_pull_request_and_rolls_out_once_it_is_merged(
    demos: dict[str, Run],
) -> None:
    """A baked AMI becomes a bump branch and a pull request on the fake forge; nothing
    moves until the demo merges it; then the rollout runs to the new image."""
    text, _ = _finished(demos, "bump")
    assert "opened pull request #1" in text
    assert "main unchanged and the stack untouched until the merge: True" in text
    assert "| `biglearn-api` |" in text
    assert "bump rolled out" in text
