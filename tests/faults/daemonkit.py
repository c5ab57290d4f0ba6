"""An in-process `daemon.Daemon` against the emulator and a local git repository.

Rules of this file:
- The git poll job runs once at start and then hourly: tests call `poll_git()` themselves,
  so each poll happens when the test says, and its outcome is read right after.
- Reconcile jobs run on the scheduler at each spec's 1 s interval, as in production.
- Waits poll a condition (metrics, status) against a deadline; nothing sleeps blindly.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import pathlib
import time
from collections.abc import Callable
from typing import Any

from reconciler import daemon, settings
from reconciler.embedded import Emulator
from tests.faults.conftest import stack_parameters
from tests.integration.gitrepo import GitRepo

POLL = 0.05


def spec_yaml(name: str, stack: str, image: str, interval: str = "1s") -> str:
    return (
        "apiVersion: reconciler/v1\n"
        "kind: StackDeployment\n"
        "metadata:\n"
        f"  name: {name}\n"
        "spec:\n"
        f"  stackName: {stack}\n"
        "  region: us-east-1\n"
        f"  image: {image}\n"
        "  capacity:\n"
        "    api: 1\n"
        "    migration: 1\n"
        "  migration:\n"
        "    check: none\n"
        "  rollout:\n"
        "    verifyHealth: false\n"
        f"  interval: {interval}\n"
    )


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL)


@dataclasses.dataclass
class DaemonWorld:
    emulator: Emulator
    repo: GitRepo
    image: str
    daemon: daemon.Daemon

    def sample(self, metric: str, **labels: str) -> float:
        return self.daemon.metrics.registry.get_sample_value(metric, labels) or 0.0

    def reconciles(self, name: str) -> float:
        return self.sample("reconciler_reconcile_total", name=name, result="ok")

    def status(self, name: str) -> dict[str, Any]:
        found = self.daemon.engine.status(name)
        assert found is not None, f"{name} is not managed"
        return found.to_json()

    def wait_reconciled(self, name: str, more: int = 1, timeout: float = 20.0) -> None:
        """Wait until `name` has had `more` reconcile steps beyond now."""
        start = self.reconciles(name)
        wait_until(
            lambda: self.reconciles(name) >= start + more, timeout, f"{more} steps of {name}"
        )


def make_settings(
    state_dir: pathlib.Path, repo: pathlib.Path, endpoint: str, **git: Any
) -> settings.Settings:
    return settings.Settings(
        state_dir=state_dir,
        log_format="json",
        git=settings.GitSettings(repo=str(repo), poll_interval=dt.timedelta(hours=1), **git),
        aws=settings.AwsSettings(endpoint_url=endpoint, max_attempts=2, rate=100.0),
        scheduling=settings.SchedulingSettings(active_interval=dt.timedelta(seconds=1)),
        http=settings.HttpSettings(listen="127.0.0.1:0"),
    )


def create_stacks(emulator: Emulator, image: str, *stacks: str) -> None:
    for stack in stacks:
        emulator.create_stack(stack, stack_parameters(image))
