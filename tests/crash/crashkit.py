"""The crash harness: kill `reconciler apply` at a named point of a rollout, then resume.

Rules of this file:
- One emulator serves every run (moto's state is per process); each run gets a world of
  its own: a new stack, git repository, state dir and migration instance (MigrationWorker).
- A rollout is a sequence of `reconciler apply` steps. Before each step of the *planned*
  part (the steps before and at the kill) the world is made quiet: the stack settled and
  a started migration finished. So a step sees the same world in every run and hits the
  same points in the same order: a tracing run enumerates them, and each kill run dies at
  exactly the point it names (a step that does not die fails the run).
- The killed step is a real subprocess killed by SIGKILL (crashpoints.py). The steps
  before it and the recovery after it run `reconciler apply`'s own code in this process:
  each builds its store, git source and AWS clients afresh from the state dir, as a
  restarted daemon does, at a fraction of a subprocess's cost. Runs are independent, so
  the sweep runs a few at once (threads; the subprocess is where the time goes).
  Recovery does not wait for quiet: it restarts at once, as a supervisor would, and
  steps until converged.
- What a run checks is in `check_converged`: the rollout's outcome, and the way it got
  there (two stack updates, the switch after the migration's `succeeded`, phases in order).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import io
import itertools
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import typing
from collections.abc import Iterator
from typing import Any

import botocore.loaders
import botocore.session
import structlog
from prometheus_client import CollectorRegistry

from reconciler import cli, logs
from reconciler.embedded import Emulator, MigrationWorker
from reconciler.store import Store
from tests.integration.gitrepo import GitRepo

NAME = "biglearn-api"
BUCKET = "crash-status"
LOCATION = f"s3://{BUCKET}/{NAME}"
SPEC_FILE = f"deploy-specs/{NAME}.yaml"
UPDATE_SECONDS = 0.2  # how long an emulated update stays UPDATE_IN_PROGRESS
MAX_PLANNED_STEPS = 8  # a rollout takes four steps from quiet; more means it does not converge
RECOVERY_SECONDS = 30.0  # from restart to converged, generously for a loaded 2-core CI box
STEP_TIMEOUT = 60.0  # one `reconciler apply` subprocess

SPEC = """\
apiVersion: reconciler/v1
kind: StackDeployment
metadata:
  name: {name}
spec:
  stackName: {stack}
  region: us-east-1
  image: {image}
  capacity:
    api: 2
    migration: 1
  parameters:
    EnvName: crash
  migration:
    check: s3
    location: {location}
    timeout: 5m
  rollout:
    timeout: 5m
    verifyHealth: true
  interval: 1s
"""

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@dataclasses.dataclass(frozen=True)
class KillPoint:
    """The n-th hit of `point` within planned step `step` (0-based) of the rollout."""

    step: int
    point: str
    nth: int

    def __str__(self) -> str:
        return f"step {self.step}: {self.point}#{self.nth}"

    @property
    def kind(self) -> str:
        return self.point.split(".", 1)[0]  # aws, store or git


@dataclasses.dataclass
class Stage:
    """What every run shares: the emulator, two images, a directory for worlds."""

    emulator: Emulator
    old: str
    new: str
    root: pathlib.Path
    counter: Iterator[int] = dataclasses.field(default_factory=itertools.count)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one run did, for the report."""

    kill: KillPoint | None
    recovery_steps: int
    recovery_seconds: float
    aws_requests: int


@contextlib.contextmanager
def stage(root: pathlib.Path) -> Iterator[Stage]:
    """The emulator and AWS credentials for this process (the in-process steps use them)."""
    saved = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(AWS_ENV)
    try:
        # The in-process steps' warnings (a stack busy after a crash) would drown the report.
        logs.configure("json", "error", stream=typing.cast(typing.TextIO, _Discard()))
        with Emulator(update_seconds=UPDATE_SECONDS) as emulator, _shared_service_models():
            old, new = emulator.register_image("app-v1"), emulator.register_image("app-v2")
            emulator.ensure_bucket(BUCKET)
            yield Stage(emulator, old, new, root)
    finally:
        structlog.reset_defaults()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _shared_service_models() -> Iterator[None]:
    """Every botocore session made in this process reads AWS's service models once.

    Each in-process step builds its clients from nothing, as a restarted daemon does, and
    a new session parses megabytes of JSON models (a second per step on a busy box). The
    models are read-only data, so sharing their loader changes nothing a crash could.
    """
    loader = botocore.loaders.create_loader()
    original = botocore.session.get_session

    def get_session(env_vars: Any = None) -> botocore.session.Session:
        session = original(env_vars)
        session.register_component("data_loader", loader)
        return session

    botocore.session.get_session = get_session
    try:
        yield
    finally:
        botocore.session.get_session = original


def _requests(registry: CollectorRegistry) -> int:
    return int(
        sum(
            sample.value
            for family in registry.collect()
            for sample in family.samples
            if sample.name == "reconciler_aws_requests_total"
        )
    )


class _Discard(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


def stack_parameters(image: str) -> dict[str, str]:
    return {
        "EnvName": "crash",
        "KeyName": "crash-key",
        "RepoUrl": "https://example.invalid/app.git",
        "BranchNameOrSha": "main",
        "LcImageId": image,
        "MigrationLcImageId": image,
        "MigrationDesiredCapacity": "0",
        "Asg1DesiredCapacity": "2",
    }


class World:
    """One stack on the old image, a spec asking for the new one, and an empty state dir."""

    def __init__(self, st: Stage) -> None:
        self.stage = st
        n = next(st.counter)
        self.stack = f"Crash{n}"
        self.dir = st.root / f"world-{n}"
        self.state_dir = self.dir / "state"
        st.emulator.create_stack(self.stack, stack_parameters(st.old))
        self.repo = GitRepo(self.dir / "repo")
        spec = SPEC.format(name=NAME, stack=self.stack, image=st.new, location=LOCATION)
        self.repo.commit("bump the image", {SPEC_FILE: spec})
        self.worker = MigrationWorker(
            st.emulator, self.stack, LOCATION, steps=2, step_seconds=0.05, poll_seconds=0.05
        ).start()

    def close(self) -> None:
        self.worker.stop()

    # --- driving the daemon -------------------------------------------------------------

    def args(self) -> list[str]:
        return [
            "apply",
            "--repo",
            str(self.repo.path),
            "--state-dir",
            str(self.state_dir),
            "--endpoint-url",
            self.stage.emulator.endpoint_url,
            "--log-format",
            "json",
            "--log-level",
            "warning",
        ]

    def step_here(self) -> int:
        """One `reconciler apply` in this process, built from the state dir as a restarted
        one is (cli._local: git source, store, clients, engine); the AWS requests it made.

        Not `cli.main`: that prints, and runs go on in parallel threads."""
        conf = cli.load_settings(cli.build_parser().parse_args(self.args()), {})
        local = cli._local(conf)
        try:
            for _, loaded in sorted(local.specs.items()):
                local.engine.step(loaded)
        finally:
            local.store.close()
        return _requests(local.engine.metrics.registry)

    def step_process(self, crashpoint: str) -> subprocess.CompletedProcess[str]:
        """One `reconciler apply` subprocess with RECONCILER_CRASHPOINT set."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RECONCILER_"))}
        env.update(AWS_ENV, RECONCILER_CRASHPOINT=crashpoint)
        return subprocess.run(
            [sys.executable, "-m", "reconciler.cli", *self.args()],
            capture_output=True,
            text=True,
            env=env,
            timeout=STEP_TIMEOUT,
            check=False,
        )

    def quiesce(self) -> None:
        """Wait until nothing moves on its own: the stack settled, a started migration done."""
        self.stage.emulator.wait_settled(self.stack)
        live = self.live()
        if live["MigrationDesiredCapacity"] != "0" and live["MigrationLcImageId"] == self.stage.new:
            self.worker.wait_for_run(self.stage.new, timeout=20.0)

    # --- looking behind the daemon's back ---------------------------------------------

    def live(self) -> dict[str, str]:
        cfn = self.stage.emulator.client("cloudformation")
        (stack,) = cfn.describe_stacks(StackName=self.stack)["Stacks"]
        return {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack["Parameters"]}

    def history(self) -> list[Any]:
        with Store.in_state_dir(self.state_dir) as store:
            return store.history(NAME)

    def converged(self) -> bool:
        if not (self.state_dir / "reconciler.sqlite3").exists():
            return False
        live, history = self.live(), self.history()
        return (
            live["LcImageId"] == self.stage.new
            and live["MigrationDesiredCapacity"] == "0"
            and bool(history)
            and history[0].result == "succeeded"
            and self.stage.emulator.stack_status(self.stack).endswith("_COMPLETE")
        )

    def update_starts(self, stack: str | None = None) -> list[tuple[dt.datetime, str | None]]:
        """(time, ClientRequestToken) of every update the stack (this world's, by default)
        started, oldest first."""
        cfn = self.stage.emulator.client("cloudformation")
        events: list[dict[str, Any]] = []
        name = stack or self.stack
        for page in cfn.get_paginator("describe_stack_events").paginate(StackName=name):
            events.extend(page["StackEvents"])
        starts = [
            (e["Timestamp"], e.get("ClientRequestToken"))
            for e in events
            if e["ResourceType"] == "AWS::CloudFormation::Stack"
            and e["ResourceStatus"] == "UPDATE_IN_PROGRESS"
        ]
        return sorted(starts, key=lambda s: s[0])

    def change_sets(self, stack: str | None = None) -> list[str]:
        """The change sets the stack has: the guard deletes each once read, crash or not."""
        cfn = self.stage.emulator.client("cloudformation")
        found = cfn.list_change_sets(StackName=stack or self.stack)["Summaries"]
        return [c["ChangeSetName"] for c in found]

    def record(self) -> dict[str, Any]:
        s3 = self.stage.emulator.client("s3")
        key = f"{NAME}/{self.stack}/{self.stage.new}.json"
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        record: dict[str, Any] = json.loads(body)
        return record

    def api_images(self) -> set[str]:
        cfn = self.stage.emulator.client("cloudformation")
        (group,) = cfn.describe_stack_resources(StackName=self.stack, LogicalResourceId="Asg1")[
            "StackResources"
        ]
        asg = self.stage.emulator.client("autoscaling")
        (described,) = asg.describe_auto_scaling_groups(
            AutoScalingGroupNames=[group["PhysicalResourceId"]]
        )["AutoScalingGroups"]
        ids = [i["InstanceId"] for i in described["Instances"]]
        reservations = self.stage.emulator.client("ec2").describe_instances(InstanceIds=ids)
        return {i["ImageId"] for r in reservations["Reservations"] for i in r["Instances"]}


@contextlib.contextmanager
def world(st: Stage) -> Iterator[World]:
    w = World(st)
    try:
        yield w
    finally:
        w.close()


# --- enumerating and killing ------------------------------------------------------------


def trace(st: Stage) -> list[list[str]]:
    """The points each planned step of a whole rollout hits, in order (one list per step)."""
    steps: list[list[str]] = []
    with world(st) as w:
        while not w.converged():
            assert len(steps) < MAX_PLANNED_STEPS, f"no convergence in {len(steps)} steps"
            w.quiesce()
            path = w.dir / f"trace-{len(steps)}.txt"
            done = w.step_process(f"trace:{path}")
            assert done.returncode == 0, f"traced step {len(steps)} failed: {done.stderr}"
            steps.append(path.read_text(encoding="utf-8").split())
    return steps


def kill_points(steps: list[list[str]]) -> list[KillPoint]:
    """Every (step, point, occurrence) of a traced rollout: each one a distinct kill."""
    points = []
    for index, hits in enumerate(steps):
        seen: collections.Counter[str] = collections.Counter()
        for point in hits:
            seen[point] += 1
            points.append(KillPoint(index, point, seen[point]))
    return points


def crash_and_resume(st: Stage, kill: KillPoint) -> Outcome:
    """Run the rollout up to `kill`, die there by SIGKILL, restart until converged, check."""
    with world(st) as w:
        for _ in range(kill.step):
            w.quiesce()
            w.step_here()
        w.quiesce()
        died = w.step_process(f"kill:{kill.point}#{kill.nth}")
        assert died.returncode == -signal.SIGKILL, (
            f"{kill}: the step was not killed (exit {died.returncode}): the enumeration "
            f"is not reproducible\n{died.stdout}\n{died.stderr}"
        )
        steps, seconds, requests = resume(w)
        check_converged(w)
        return Outcome(kill, steps, seconds, requests)


def resume(w: World) -> tuple[int, float, int]:
    """Restart at once and step until converged; (steps, seconds, AWS requests) it took."""
    started = time.monotonic()
    steps = requests = 0
    while True:
        # At least one step: a restart in an already converged world must keep it so.
        requests += w.step_here()
        steps += 1
        if w.converged():
            break
        assert time.monotonic() - started < RECOVERY_SECONDS, (
            f"not converged {RECOVERY_SECONDS}s after the restart ({steps} steps): "
            f"{w.live()} {w.history()}"
        )
        time.sleep(0.05)  # a daemon's tick; the emulator's updates need wall time
    seconds = time.monotonic() - started
    before = len(w.update_starts())
    w.step_here()  # converged means settled: one more step changes nothing
    assert len(w.update_starts()) == before, "a step after convergence started an update"
    return steps, seconds, requests


def check_converged(w: World) -> None:
    """The rollout finished, and finished the way CONTRACT section 2 says."""
    new = w.stage.new
    live = w.live()
    assert live["LcImageId"] == new and live["MigrationLcImageId"] == new, live
    assert live["MigrationDesiredCapacity"] == "0", live
    assert w.api_images() == {new}, "API instances are not all on the new image"
    starts = w.update_starts()
    tokens = [token for _, token in starts]
    # Exactly two updates: a resend after a crash must reuse the token, and the emulator,
    # like CloudFormation, starts nothing for it.
    assert len(starts) == 2, f"expected 2 stack updates, saw {tokens}"
    assert tokens[0] and tokens[0].startswith("reconciler-migrate-"), tokens
    assert tokens[1] and tokens[1].startswith("reconciler-switch-"), tokens
    record = w.record()
    assert record["status"] == "succeeded", record
    succeeded = dt.datetime.fromisoformat(record["updatedAt"].replace("Z", "+00:00"))
    switch_started = starts[1][0]
    assert switch_started >= succeeded, (
        f"the API switch started at {switch_started}, before the migration succeeded at {succeeded}"
    )
    check_history(w.history())
    assert w.change_sets() == [], f"change sets left behind: {w.change_sets()}"


def check_history(history: list[Any]) -> None:
    """One rollout, succeeded, every phase stamped and in order."""
    assert len(history) == 1, f"expected one rollout in history, saw {history}"
    (r,) = history
    assert r.result == "succeeded", r
    marks = [r.phase1_started_at, r.migrated_at, r.switch_started_at, r.switched_at]
    assert all(m is not None for m in marks), f"a phase was skipped: {r}"
    ordered = [r.started_at, *marks, r.finished_at]
    assert ordered == sorted(ordered), f"phases out of order: {r}"
