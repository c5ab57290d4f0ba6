"""reconciler.crashpoints: the test facility the crash sweep (tests/crash) stands on."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

import pytest

from reconciler import crashpoints

# Three hits of two points, with a marker printed between them.
_SCRIPT = (
    "from reconciler import crashpoints as c\n"
    "c.hit('a.before'); print('one', flush=True)\n"
    "c.hit('b.after'); print('two', flush=True)\n"
    "c.hit('a.before'); print('three', flush=True)\n"
)


def _run(value: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, crashpoints.ENV: value}
    return subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, check=False
    )


def test_inert_without_the_variable() -> None:
    """The test process sets nothing: hit() does nothing and no hook is installed."""
    assert not crashpoints.ACTIVE
    crashpoints.hit("aws.UpdateStack.before")


def test_trace_lists_every_hit_in_order(tmp_path: pathlib.Path) -> None:
    trace = tmp_path / "trace.txt"
    done = _run(f"trace:{trace}")
    assert done.returncode == 0, done.stderr
    assert trace.read_text().split() == ["a.before", "b.after", "a.before"]


def test_kill_at_the_nth_hit_is_a_sigkill_right_there() -> None:
    """Dies at the second hit of a.before: what came before ran, nothing after did."""
    done = _run("kill:a.before#2")
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == ["one", "two"]


def test_a_point_never_reached_does_not_kill() -> None:
    done = _run("kill:a.before#3")
    assert done.returncode == 0
    assert done.stdout.split() == ["one", "two", "three"]


@pytest.mark.parametrize("value", ["trace:", "kill:a.before", "kill:a.before#0", "boom:x"])
def test_a_malformed_value_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="RECONCILER_CRASHPOINT"):
        crashpoints._parse(value)
