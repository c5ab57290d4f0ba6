"""Crash anywhere in a fleet rollout: the limits hold whatever point the process dies at.

A fleet of three specs (a canary, then two members one at a time) rolls out through
`reconciler apply` steps, as crashkit does for one stack. A tracing run enumerates every
store write and stack update of the whole fleet rollout; then, for each of them, a fresh world
runs to that point, the process kills itself there, and a restarted reconciler steps until
the fleet converges. Each run must show, from the stacks' own events and the store:
- every member rolled out exactly once (two updates each, migrate then switch);
- no member of the second step started before the canary's rollout finished;
- never two members of the second step under way at once (maxConcurrent 1).

The second sweep fails the canary's migration: the fleet (failureBudget 0) halts, and
whatever point the process dies at, the other two stacks are never sent an update.

Slow: `make test-slow`.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from reconciler import cli
from reconciler.embedded import MigrationWorker
from reconciler.store import Store
from tests.crash import crashkit
from tests.integration.gitrepo import GitRepo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]
WORKERS = int(os.environ.get("RECONCILER_CRASH_WORKERS", "3"))
MEMBERS = ("fleet-a-canary", "fleet-b-one", "fleet-c-two")  # apply steps them in this order
BUCKET = crashkit.BUCKET
MAX_STEPS = 24
WRITES = ("aws.UpdateStack.", "aws.CreateChangeSet.", "aws.DeleteChangeSet.")

SPEC = """\
apiVersion: reconciler/v1
kind: StackDeployment
metadata:
  name: {name}
  labels: {{app: crash{n}{canary}}}
spec:
  stackName: {stack}
  region: us-east-1
  image: {image}
  capacity: {{api: 1, migration: 1}}
  parameters: {{EnvName: crash}}
  migration: {{check: s3, location: "s3://{bucket}/{name}", timeout: 5m}}
  rollout: {{timeout: 5m, verifyHealth: true}}
  interval: 1s
"""

FLEET = """\
apiVersion: reconciler/v1
kind: Fleet
metadata:
  name: crash{n}
spec:
  selector: {{matchLabels: {{app: crash{n}}}}}
  steps:
    - matchLabels: {{tier: canary}}
  failureBudget: 0
"""


class FleetWorld(crashkit.World):
    """Three stacks on the old image, a fleet, and specs asking for the new one."""

    def __init__(self, st: crashkit.Stage, fail_canary: bool = False) -> None:
        self.stage = st
        n = next(st.counter)
        self.dir = st.root / f"fleet-{n}"
        self.state_dir = self.dir / "state"
        self.fleet = f"crash{n}"
        self.stacks = {name: f"Fleet{n}{i}" for i, name in enumerate(MEMBERS)}
        files = {f"deploy-specs/fleet-{n}.yaml": FLEET.format(n=n)}
        for name, stack in self.stacks.items():
            st.emulator.create_stack(stack, crashkit.stack_parameters(st.old))
            canary = ", tier: canary" if name.endswith("canary") else ""
            files[f"deploy-specs/{name}.yaml"] = SPEC.format(
                name=name, n=n, canary=canary, stack=stack, image=st.new, bucket=BUCKET
            )
        self.repo = GitRepo(self.dir / "repo")
        self.repo.commit("bump the fleet", files)
        self.workers = [
            MigrationWorker(
                st.emulator,
                stack,
                f"s3://{BUCKET}/{name}",
                steps=2,
                step_seconds=0.05,
                poll_seconds=0.05,
                fail_images={st.new} if fail_canary and name == MEMBERS[0] else (),
            ).start()
            for name, stack in self.stacks.items()
        ]

    def close(self) -> None:
        for w in self.workers:
            w.stop()

    def step_here(self) -> int:
        conf = cli.load_settings(cli.build_parser().parse_args(self.args()), {})
        local = cli._local(conf)
        try:
            for _, loaded in sorted(local.specs.items()):
                local.engine.step(loaded)
        finally:
            local.store.close()
        return 0

    def step_process(self, crashpoint: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RECONCILER_"))}
        env.update(crashkit.AWS_ENV, RECONCILER_CRASHPOINT=crashpoint)
        return subprocess.run(
            [sys.executable, "-m", "reconciler.cli", *self.args()],
            capture_output=True,
            text=True,
            env=env,
            timeout=crashkit.STEP_TIMEOUT,
            check=False,
        )

    def quiesce(self) -> None:
        for stack in self.stacks.values():
            self.stage.emulator.wait_settled(stack)
        for worker, stack in zip(self.workers, self.stacks.values(), strict=True):
            live = self.live_of(stack)
            if (
                live["MigrationDesiredCapacity"] != "0"
                and live["MigrationLcImageId"] == self.stage.new
                and self.stage.new not in worker.fail_images
            ):
                worker.wait_for_run(self.stage.new, timeout=20.0)

    def live_of(self, stack: str) -> dict[str, str]:
        cfn = self.stage.emulator.client("cloudformation")
        (found,) = cfn.describe_stacks(StackName=stack)["Stacks"]
        return {p["ParameterKey"]: p.get("ParameterValue", "") for p in found["Parameters"]}

    def histories(self) -> dict[str, list[Any]]:
        if not (self.state_dir / "reconciler.sqlite3").exists():
            return {name: [] for name in MEMBERS}
        with Store.in_state_dir(self.state_dir) as store:
            return {name: store.history(name) for name in MEMBERS}

    def converged(self) -> bool:
        histories = self.histories()
        return all(
            self.live_of(stack)["LcImageId"] == self.stage.new
            and self.live_of(stack)["MigrationDesiredCapacity"] == "0"
            and histories[name]
            and histories[name][0].result == "succeeded"
            and self.stage.emulator.stack_status(stack).endswith("_COMPLETE")
            for name, stack in self.stacks.items()
        )

    def halted(self) -> bool:
        if not (self.state_dir / "reconciler.sqlite3").exists():
            return False
        with Store.in_state_dir(self.state_dir) as store:
            halted = store.fleet(self.fleet).halt is not None
        canary = self.stacks[MEMBERS[0]]
        return halted and self.live_of(canary)["MigrationDesiredCapacity"] == "0"


def trace(st: crashkit.Stage, fail_canary: bool) -> list[list[str]]:
    steps: list[list[str]] = []
    w = FleetWorld(st, fail_canary)
    done = w.halted if fail_canary else w.converged
    try:
        while not done():
            assert len(steps) < MAX_STEPS, f"no end in {len(steps)} steps"
            w.quiesce()
            path = w.dir / f"trace-{len(steps)}.txt"
            ran = w.step_process(f"trace:{path}")
            # apply exits 1 once a spec failed: the halting run's canary does, on purpose.
            allowed = (0, 1) if fail_canary else (0,)
            assert ran.returncode in allowed, f"traced step {len(steps)} failed: {ran.stderr}"
            steps.append(path.read_text(encoding="utf-8").split())
    finally:
        w.close()
    return steps


def fleet_points(steps: list[list[str]]) -> list[crashkit.KillPoint]:
    """Every point that writes: each store write (its before, commit and after), each
    UpdateStack and each change set the guard creates or deletes. A kill at a read is a
    kill before the next write, and git, reads and the store's schema migration at open are
    swept for one stack by test_crash_sweep.py."""
    return [
        p
        for p in crashkit.kill_points(steps)
        if (p.kind == "store" and not p.point.startswith("store.migrate."))
        or p.point.startswith(WRITES)
    ]


def crash_and_resume(st: crashkit.Stage, kill: crashkit.KillPoint, fail_canary: bool) -> None:
    w = FleetWorld(st, fail_canary)
    try:
        for _ in range(kill.step):
            w.quiesce()
            w.step_here()
        w.quiesce()
        died = w.step_process(f"kill:{kill.point}#{kill.nth}")
        assert died.returncode == -signal.SIGKILL, (
            f"{kill}: the step was not killed (exit {died.returncode})\n{died.stderr[-2000:]}"
        )
        done = w.halted if fail_canary else w.converged
        started = time.monotonic()
        while True:
            w.step_here()
            if done():
                break
            assert time.monotonic() - started < 60, f"{kill}: no end after the restart"
            time.sleep(0.05)  # a daemon's tick; the emulator's updates need wall time
        w.step_here()  # and one more changes nothing that the checks below would miss
        if fail_canary:
            check_halted(w)
        else:
            check_waves(w)
        for stack in w.stacks.values():
            assert w.change_sets(stack) == [], f"{kill}: change sets left on {stack}"
    finally:
        w.close()


def check_waves(w: FleetWorld) -> None:
    histories = w.histories()
    for name, stack in w.stacks.items():
        tokens = [t for _, t in w.update_starts(stack)]
        assert len(tokens) == 2, f"{name}: expected migrate and switch once each, saw {tokens}"
        assert len(histories[name]) == 1 and histories[name][0].result == "succeeded", name
    canary, one, two = (histories[n][0] for n in MEMBERS)
    assert one.started_at >= canary.finished_at and two.started_at >= canary.finished_at, (
        f"a second-step member started before the canary finished: {canary} {one} {two}"
    )
    first, second = sorted((one, two), key=lambda r: r.started_at)
    assert second.started_at >= first.finished_at, (
        f"two members of a maxConcurrent 1 step were under way at once: {first} {second}"
    )
    # The stacks' own clock agrees: the second member's first update after the first's last.
    starts = {n: w.update_starts(s) for n, s in w.stacks.items()}
    assert min(starts[MEMBERS[1]][0][0], starts[MEMBERS[2]][0][0]) >= starts[MEMBERS[0]][-1][0]


def check_halted(w: FleetWorld) -> None:
    for name in MEMBERS[1:]:
        stack = w.stacks[name]
        assert w.update_starts(stack) == [], f"{name} of a halted fleet was sent an update"
        assert w.live_of(stack)["LcImageId"] == w.stage.old
    assert w.histories()[MEMBERS[1]] == [] and w.histories()[MEMBERS[2]] == []


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[crashkit.Stage]:
    with crashkit.stage(tmp_path_factory.mktemp("crash-fleet")) as st:
        yield st


@pytest.mark.parametrize("fail_canary", [False, True], ids=["converges", "halts"])
def test_every_kill_point_of_a_fleet_rollout_keeps_the_limits(
    stage: crashkit.Stage, fail_canary: bool
) -> None:
    points = fleet_points(trace(stage, fail_canary))
    failures: list[str] = []

    def run(kill: crashkit.KillPoint) -> None:
        try:
            crash_and_resume(stage, kill, fail_canary)
        except AssertionError as exc:  # go on: the report lists every point that fails
            failures.append(f"{kill}: {exc}")

    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(run, points))
    print(f"{len(points)} kill points, {len(failures)} failed")
    assert points
    assert not failures, "\n".join(failures[:20])


def test_a_kill_where_the_slot_is_taken_resumes_within_the_limits(
    stage: crashkit.Stage,
) -> None:
    """The quick one, in the default suite's spirit: dead right after a start took a slot."""
    crash_and_resume(stage, crashkit.KillPoint(0, "store.start_member.after", 1), False)
