"""Notifications from a real `reconciler run` process to a real local webhook receiver.

The daemon is started with `--notify-url` pointing at an HTTP server in the test process;
the rollout is the one of test_daemon.py (merged bump, signed webhook, the migration
instance played by MigrationWorker). What is held: exactly one message per transition,
also when the daemon is killed mid-rollout and started again on the same state dir.
"""

from __future__ import annotations

import collections
import pathlib
import sqlite3
import subprocess
from collections.abc import Iterator

import pytest

from reconciler.embedded import MigrationWorker
from reconciler.store.sqlite import DB_FILE
from tests.e2e.conftest import (
    LOCATION,
    SECRET,
    STACK,
    DaemonProcess,
    World,
    clean_env,
    hold,
    in_sync_on,
    reconciler_command,
    spec_text,
    wait_until,
)
from tests.unit.notifykit import Receiver

pytestmark = pytest.mark.e2e

ROLLOUT = ("rollout_started", "migration_succeeded", "switched", "rollout_succeeded")
NOTIFY_INTERVAL = 2.0  # settings.NotifySettings.interval: how often the daemon delivers


class NotifyingDaemon(DaemonProcess):
    """`reconciler run` with a webhook sink and a short active interval (a quick rollout)."""

    def __init__(self, world: World, state_dir: pathlib.Path, log: pathlib.Path, url: str):
        super().__init__(world, state_dir, log)
        self.url = url

    def start(self) -> NotifyingDaemon:
        args = [
            *reconciler_command(), "run",
            "--repo", str(self.world.repo.path),
            "--state-dir", str(self.state_dir),
            "--listen", self.listen,
            "--endpoint-url", self.world.emulator.endpoint_url,
            "--log-format", "json",
            "--poll-interval", "60s",
            "--active-interval", "1s",
            "--webhook-secret", SECRET,
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # The URL through the environment, as documented: it stays out of `ps`.
                env=clean_env(RECONCILER_NOTIFY_URL=self.url),
                cwd=self.world.tmp,
            )
        return self


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def daemons(world: World, request: pytest.FixtureRequest) -> Iterator[list[NotifyingDaemon]]:
    started: list[NotifyingDaemon] = []
    request.node.e2e_daemons = started  # the conftest attaches their logs to a failure
    yield started
    for d in started:
        d.kill()


def _start(world: World, started: list[NotifyingDaemon], url: str) -> NotifyingDaemon:
    log = world.tmp / f"daemon-{len(started) + 1}.log"
    d = NotifyingDaemon(world, world.tmp / "state", log, url).start()
    started.append(d)
    d.wait_ready()
    return d


def _bump(world: World, d: DaemonProcess) -> None:
    head = world.repo.merge(spec_text(world.new), f"Deploy {world.new}")
    assert d.webhook(head) == 202


def _delivered(world: World, event: str) -> bool:
    """Whether the daemon recorded `event` as delivered (read behind its back, read-only)."""
    db = sqlite3.connect(f"file:{world.tmp / 'state' / DB_FILE}?mode=ro", uri=True)
    try:
        row = db.execute(
            "SELECT 1 FROM outbox WHERE key LIKE ? AND delivered_at IS NOT NULL", (f"%|{event}",)
        ).fetchone()
    finally:
        db.close()
    return row is not None


def _assert_once_each(receiver: Receiver) -> None:
    counts = collections.Counter(receiver.events())
    assert counts == collections.Counter(ROLLOUT), receiver.events()


def _finish(world: World, d: DaemonProcess, receiver: Receiver) -> None:
    """Wait for convergence and the last message, then watch a few delivery passes."""
    d.wait_status(in_sync_on(world.new), 40, "InSync on the new image")
    receiver.wait_for("rollout_succeeded", timeout=15)
    hold(NOTIFY_INTERVAL * 2, lambda: _assert_once_each(receiver))


def test_a_rollout_sends_exactly_one_message_per_transition(
    world: World, daemons: list[NotifyingDaemon], receiver: Receiver
) -> None:
    """rollout_started, migration_succeeded, switched, rollout_succeeded: one POST each,
    with the spec's identity, and a delivery counter that says so."""
    d = _start(world, daemons, receiver.url + "/hook")
    d.wait_status(in_sync_on(world.old), 30, "InSync on the old image")
    with MigrationWorker(world.emulator, STACK, LOCATION, steps=2, step_seconds=0.2):
        _bump(world, d)
        _finish(world, d, receiver)
    assert {(b["stack"], b["image"]) for b in receiver.bodies} == {(STACK, world.new)}
    assert d.metric("reconciler_notifications_total", sink="default", result="ok") == 4.0


@pytest.mark.slow  # two daemons, one killed: `make test-slow`
def test_a_daemon_killed_mid_rollout_does_not_resend_after_restart(
    world: World, daemons: list[NotifyingDaemon], receiver: Receiver
) -> None:
    """SIGKILL once rollout_started went out; a new daemon on the same state dir finishes
    the rollout and sends each remaining transition once, and rollout_started not again."""
    first = _start(world, daemons, receiver.url + "/hook")
    first.wait_status(in_sync_on(world.old), 30, "InSync on the old image")
    with MigrationWorker(world.emulator, STACK, LOCATION, steps=4, step_seconds=0.5):
        _bump(world, first)
        receiver.wait_for("rollout_started", timeout=20)
        wait_until(lambda: _delivered(world, "rollout_started"), 10, "delivery recorded")
        first.kill()
        assert "rollout_succeeded" not in receiver.events(), "killed too late to test"
        second = _start(world, daemons, receiver.url + "/hook")
        _finish(world, second, receiver)
