"""A real `reconciler run` process driving a rollout on the embedded emulator.

The daemon runs as a subprocess with operator flags; the test process plays AWS (the
emulator), the migration instance (MigrationWorker) and the developer (git merges and the
signed push webhook). The daemon's active interval is its default 5 s, so a rollout takes
a few ticks; every wait polls a condition against a deadline.
"""

from __future__ import annotations

import pathlib
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from reconciler.embedded import MigrationWorker
from reconciler.store import Store
from tests.e2e.conftest import (
    LOCATION,
    NAME,
    STACK,
    DaemonFactory,
    DaemonProcess,
    World,
    clean_env,
    free_port,
    hold,
    in_sync_on,
    reconciler_command,
    spec_text,
    wait_until,
)

pytestmark = pytest.mark.e2e

ROLLOUT_TIMEOUT = 45.0  # a rollout is about four 5 s ticks; generous for a loaded 2-core box
STOP_LIMIT = 8.0  # seconds from SIGTERM to exit: a step in flight is a few AWS calls
ORDER = ("InSync", "Migrating", "UpdatingApi", "Verifying", "InSync")


def _worker(world: World, steps: int = 2) -> MigrationWorker:
    return MigrationWorker(world.emulator, STACK, LOCATION, steps=steps, step_seconds=0.2)


def _assert_in_order(phases: list[str]) -> None:
    """`phases` (consecutive repeats collapsed) follows ORDER, skipping some, never going back."""
    at = 0
    for phase in phases:
        later = [i for i in range(at, len(ORDER)) if ORDER[i] == phase]
        assert later, f"phase {phase} out of order in {phases} (expected order {ORDER})"
        at = later[0]
    assert at == len(ORDER) - 1, f"the rollout did not end InSync: {phases}"


def _counter(d: DaemonProcess, metric: str, **labels: str) -> float:
    return d.metric(metric, name=NAME, **labels) or 0.0


def _reconciles(d: DaemonProcess) -> float:
    return _counter(d, "reconciler_reconcile_total", result="ok")


def _ticks(d: DaemonProcess, count: int, timeout: float = 20.0) -> None:
    """Wait until the daemon has finished `count` more reconcile steps of the spec."""
    start = _reconciles(d)
    wait_until(lambda: _reconciles(d) >= start + count, timeout, f"{count} reconcile steps")


def _phase1_sent(image: str) -> Callable[[dict[str, Any]], bool]:
    """Migrating, with the phase-1 update (migration group on `image`) seen on the stack."""
    return lambda s: (
        s["phase"] == "Migrating" and s["live"]["parameters"].get("MigrationLcImageId") == image
    )


def _bump(world: World, d: DaemonProcess, text: str, title: str) -> str:
    head = world.repo.merge(text, title)
    assert d.webhook(head) == 202
    return head


def test_merged_ami_bump_rolls_out_through_the_phases_in_order(
    world: World, daemon: DaemonProcess
) -> None:
    """A merged bump, announced by the signed webhook, migrates first, then switches the API
    group; status, metrics, the migration record, `history` and `status` all tell it."""
    d = daemon
    assert _counter(d, "reconciler_stack_in_sync") == 1.0
    phases: list[str] = []
    in_sync: list[float] = []
    with _worker(world):
        head = _bump(world, d, spec_text(world.new), f"Deploy {world.new}")

        def converged() -> bool:
            s = d.status()
            if not phases or phases[-1] != s["phase"]:
                phases.append(s["phase"])
            value = _counter(d, "reconciler_stack_in_sync")
            if not in_sync or in_sync[-1] != value:
                in_sync.append(value)
            return bool(in_sync_on(world.new)(s) and s["revision"] == head)

        wait_until(converged, ROLLOUT_TIMEOUT, f"InSync on {world.new}")
    status = d.status()

    _assert_in_order(phases)
    assert "Migrating" in phases, phases  # phase 1 lasts at least one 5 s tick
    assert {"UpdatingApi", "Verifying"} & set(phases), phases
    assert status["revision"] == head, "the revision is the merge commit"
    assert status["desired"]["image"] == world.new
    live = world.live()
    assert (live["LcImageId"], live["MigrationLcImageId"]) == (world.new, world.new)
    assert live["MigrationDesiredCapacity"] == "0"

    record = world.migration_record(world.new)
    assert record is not None
    assert (record["image"], record["status"]) == (world.new, "succeeded")

    assert in_sync[0] == 1.0 and 0.0 in in_sync and in_sync[-1] == 1.0, in_sync
    assert in_sync.index(0.0) < len(in_sync) - 1
    assert _counter(d, "reconciler_rollouts_total", result="succeeded") == 1.0
    assert _counter(d, "reconciler_rollouts_total", result="failed") == 0.0
    assert _counter(d, "reconciler_stack_updates_total", phase="migrate", result="ok") == 1.0
    assert _counter(d, "reconciler_stack_updates_total", phase="switch", result="ok") == 1.0
    assert world.update_starts() == 2

    history = d.cli("history", NAME)
    assert history.returncode == 0, history.stderr
    assert f"{world.old} -> {world.new}" in history.stdout
    assert f"rev {head[:12]}: succeeded" in history.stdout
    assert "migrate" in history.stdout and "switched" in history.stdout

    table = d.cli("status")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:5] == ["NAME", "STACK", "PHASE", "LIVE", "DESIRED"]
    assert [r.split()[:5] for r in rows] == [[NAME, STACK, "InSync", world.new, world.new]]


def _assert_untouched(world: World, d: DaemonProcess, before: dict[str, str], starts: int) -> None:
    assert world.live() == before, "stack parameters changed while paused"
    assert world.update_starts() == starts, "an update was sent while paused"
    assert d.status()["phase"] == "Paused"


def test_pause_in_the_spec_holds_the_rollout_until_a_commit_clears_it(
    world: World, daemon: DaemonProcess
) -> None:
    """`paused: {reason}` merged with the bump: phase Paused and no UpdateStack over several
    ticks; a commit that clears it lets the rollout run to InSync."""
    d = daemon
    before, starts = world.live(), world.update_starts()
    with _worker(world):
        head = _bump(world, d, spec_text(world.new, paused="change freeze"), "Deploy, paused")
        status = d.wait_status(
            lambda s: s["phase"] == "Paused" and s["revision"] == head, 15, "Paused"
        )
        assert status["paused"] == {"reason": "change freeze", "until": None, "source": "spec"}
        assert _counter(d, "reconciler_stack_paused") == 1.0
        ticks = _reconciles(d)
        _ticks(d, 3)  # the spec's interval is 1 s: the daemon looked, and held
        _assert_untouched(world, d, before, starts)
        assert _reconciles(d) >= ticks + 3

        _bump(world, d, spec_text(world.new), "Resume the rollout")
        d.wait_status(in_sync_on(world.new), ROLLOUT_TIMEOUT, f"InSync on {world.new}")
    assert world.update_starts() == starts + 2
    assert _counter(d, "reconciler_stack_paused") == 0.0


def test_runtime_pause_mid_rollout_stops_further_updates_until_resumed(
    world: World, daemon: DaemonProcess
) -> None:
    """`reconciler pause` while Migrating: the migration finishes but the switch is not
    sent; `reconciler resume` lets it finish. Controls without the token are refused."""
    d = daemon
    starts = world.update_starts()
    # No migration instance yet: the gate cannot open before the pause is in place.
    _bump(world, d, spec_text(world.new), f"Deploy {world.new}")
    d.wait_status(_phase1_sent(world.new), 20, "phase 1 sent")
    assert world.update_starts() == starts + 1

    unauthorized = d.cli("pause", NAME, "--reason", "x", token=None)
    assert unauthorized.returncode == 2
    assert "401" in unauthorized.stderr
    code, _ = d.request("POST", f"/api/v1/stacks/{NAME}/resume", b"{}")
    assert code == 401
    code, _ = d.request(
        "POST", f"/api/v1/stacks/{NAME}/pause", b'{"reason": "x"}', {"Authorization": "Bearer no"}
    )
    assert code == 401

    paused = d.cli("pause", NAME, "--reason", "incident 42")
    assert paused.returncode == 0, paused.stderr
    status = d.wait_status(lambda s: s["phase"] == "Paused", 15, "Paused")
    assert status["paused"]["source"] == "runtime"
    assert status["paused"]["reason"] == "incident 42"

    with _worker(world):
        wait_until(
            lambda: (world.migration_record(world.new) or {}).get("status") == "succeeded",
            20,
            "the migration record",
        )
        world.emulator.wait_settled(STACK)
        before = world.live()
        _ticks(d, 3)
        _assert_untouched(world, d, before, starts + 1)
        assert before["LcImageId"] == world.old

        resumed = d.cli("resume", NAME)
        assert resumed.returncode == 0, resumed.stderr
        assert "resumed" in resumed.stdout
        d.wait_status(in_sync_on(world.new), ROLLOUT_TIMEOUT, f"InSync on {world.new}")
    assert world.update_starts() == starts + 2


def test_webhook_with_a_wrong_signature_is_refused_and_polls_nothing(
    world: World, daemon: DaemonProcess
) -> None:
    """A wrong or missing X-Hub-Signature-256 is 401 and starts no git poll; the right one
    is 202 and the new revision shows up at once (the poll interval is 60 s)."""
    d = daemon
    first = d.status()["revision"]
    fetches = d.metric("reconciler_git_fetch_total", result="ok")
    assert fetches is not None and fetches >= 1
    head = world.repo.merge(spec_text(world.old, interval="2s"), "Slower idle interval")

    assert d.webhook(head, secret="not-the-secret") == 401
    assert d.webhook(head, secret=None) == 401

    def unchanged() -> None:
        assert d.metric("reconciler_git_fetch_total", result="ok") == fetches
        assert d.status()["revision"] == first

    hold(2.0, unchanged)

    sent = time.monotonic()
    assert d.webhook(head) == 202
    d.wait_status(lambda s: s["revision"] == head, 10, "the new revision")
    assert time.monotonic() - sent < 10
    assert (d.metric("reconciler_git_fetch_total", result="ok") or 0) > fetches


def test_sigterm_mid_rollout_exits_cleanly_and_a_new_daemon_finishes_the_rollout(
    world: World, start_daemon: DaemonFactory
) -> None:
    """SIGTERM while Migrating exits 0 within seconds; a second daemon on the same state dir
    is refused while the first runs; a new one after it resumes without resending phase 1."""
    first = start_daemon()
    first.wait_status(in_sync_on(world.old), 30, "InSync on the old image")
    starts = world.update_starts()

    second = start_daemon(ready=False)
    assert second.proc is not None
    code = second.proc.wait(timeout=30)
    assert code != 0
    assert "state dir" in second.log()
    assert first.proc is not None and first.proc.poll() is None

    _bump(world, first, spec_text(world.new), f"Deploy {world.new}")
    first.wait_status(_phase1_sent(world.new), 20, "phase 1 sent")
    assert world.update_starts() == starts + 1

    stopped = time.monotonic()
    assert first.terminate(timeout=20) == 0
    took = time.monotonic() - stopped
    assert took < STOP_LIMIT, f"the daemon took {took:.1f}s to exit after SIGTERM"

    with _worker(world):
        third = start_daemon()
        status: dict[str, Any] = third.wait_status(
            in_sync_on(world.new), ROLLOUT_TIMEOUT, f"InSync on {world.new}"
        )
    assert world.update_starts() == starts + 2, "phase 1 was sent again after the restart"
    assert status["rollout"]["result"] == "succeeded"
    history = third.get_json(f"/api/v1/stacks/{NAME}/history")["history"]
    assert [(r["image"], r["result"]) for r in history] == [(world.new, "succeeded")]


def test_run_on_a_state_dir_in_use_says_so_in_one_line(tmp_path: pathlib.Path) -> None:
    """`reconciler run` on a state dir another process holds exits 1 with one line naming
    the state dir, as every other CLI error does, not a Python traceback."""
    state = tmp_path / "state"
    lock = Store.lock_state_dir(state)  # the same flock a running daemon holds
    try:
        done = subprocess.run(
            [*reconciler_command(), "run", "--repo", str(tmp_path), "--state-dir", str(state),
             "--listen", f"127.0.0.1:{free_port()}", "--log-format", "json"],
            capture_output=True, text=True, env=clean_env(), timeout=30, check=False,
        )  # fmt: skip
    finally:
        lock.release()
    assert done.returncode == 1
    assert "state dir" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("reconciler: state dir"), done.stderr
