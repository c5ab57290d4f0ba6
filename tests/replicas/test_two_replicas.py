"""Two real `reconciler run` replicas on one lock table against one emulator: one drives
the stack, the other stands by; exactly one UpdateStack per rollout step; after the leader
is killed with SIGKILL mid-rollout, the standby takes the lease once it expires and
converges from the shared store."""

from __future__ import annotations

import collections
import os
import pathlib
import subprocess
from collections.abc import Iterator

import pytest

from reconciler.embedded import Emulator, MigrationWorker
from reconciler.store import create_table
from tests.e2e.conftest import (
    ACTIVE_INTERVAL,
    LOCATION,
    NAME,
    SECRET,
    STACK,
    TOKEN,
    UPDATE_SECONDS,
    DaemonProcess,
    GitRepo,
    World,
    clean_env,
    in_sync_on,
    reconciler_command,
    spec_text,
    stack_parameters,
    wait_until,
)

pytestmark = pytest.mark.e2e

TABLE = "reconciler-replicas"
LEASE_TTL = 3.0  # seconds: short, so the takeover after a kill fits in a test
STANDBY = "driven by replica"


class Replica(DaemonProcess):
    """A daemon started with the lock table and a replica id."""

    def __init__(self, world: World, replica_id: str) -> None:
        super().__init__(world, world.tmp / f"state-{replica_id}", world.tmp / f"{replica_id}.log")
        self.replica_id = replica_id

    def start(self) -> Replica:
        args = [
            *reconciler_command(),
            "run",
            *("--repo", str(self.world.repo.path), "--state-dir", str(self.state_dir)),
            *("--listen", self.listen, "--endpoint-url", self.world.emulator.endpoint_url),
            *("--log-format", "json", "--poll-interval", "60s"),
            *("--active-interval", ACTIVE_INTERVAL, "--webhook-secret", SECRET, "--token", TOKEN),
            *("--lock-table", TABLE, "--replica-id", self.replica_id),
            *("--lease-ttl", f"{LEASE_TTL:g}s"),
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_env(),
                cwd=self.world.tmp,
            )
        return self

    def standing_by(self) -> bool:
        return str(self.status()["message"]).startswith(STANDBY)


@pytest.fixture
def world(tmp_path: pathlib.Path) -> Iterator[World]:
    with Emulator(update_seconds=UPDATE_SECONDS) as emulator:
        old, new, newer = (emulator.register_image(f"biglearn-v{i}") for i in (1, 2, 3))
        emulator.ensure_bucket("deploy-status")
        emulator.create_stack(STACK, stack_parameters(old))
        create_table(emulator.client("dynamodb"), TABLE)
        repo = GitRepo(tmp_path / "repo")
        repo.init(spec_text(old))
        yield World(emulator, repo, old, new, newer, tmp_path)


@pytest.fixture
def replicas(world: World) -> Iterator[list[Replica]]:
    started = [Replica(world, rid).start() for rid in ("a", "b")]
    try:
        for r in started:
            r.wait_ready()
        yield started
    finally:
        for r in started:
            r.kill()
            # Captured output: pytest shows it only for a failing test.
            print(f"--- replica {r.replica_id} log ---\n{r.log()[-20000:]}")


def update_starts_by_token(emulator: Emulator) -> collections.Counter[str]:
    """UPDATE_IN_PROGRESS events of the stack itself, counted per ClientRequestToken."""
    cfn = emulator.client("cloudformation")
    counts: collections.Counter[str] = collections.Counter()
    for page in cfn.get_paginator("describe_stack_events").paginate(StackName=STACK):
        for e in page["StackEvents"]:
            if (e["ResourceType"], e["ResourceStatus"]) == (
                "AWS::CloudFormation::Stack",
                "UPDATE_IN_PROGRESS",
            ):
                counts[e.get("ClientRequestToken", "none")] += 1
    return counts


def leader_and_standby(replicas: list[Replica]) -> tuple[Replica, Replica]:
    def settled() -> tuple[Replica, Replica] | None:
        standing = [r.standing_by() for r in replicas]
        if standing.count(True) != 1:
            return None
        return replicas[standing.index(False)], replicas[standing.index(True)]

    return wait_until(settled, 20, "one replica driving the stack and one standing by")


def test_one_replica_drives_and_the_other_takes_over_after_the_leader_is_killed(
    world: World, replicas: list[Replica]
) -> None:
    """Exactly one UpdateStack per step (one UPDATE_IN_PROGRESS per token, two in all), the
    standby names the leader, and after SIGKILL of the leader mid-rollout the standby takes
    over within the lease TTL and converges."""
    leader, standby = leader_and_standby(replicas)
    leader.wait_status(in_sync_on(world.old), 30, "InSync on the old image")
    assert standby.status()["message"] == f"{STANDBY} {leader.replica_id}"
    with MigrationWorker(world.emulator, STACK, LOCATION, steps=10, step_seconds=0.3):
        head = world.repo.merge(spec_text(world.new), f"Deploy {world.new}")
        for r in replicas:
            assert r.webhook(head) == 202
        leader.wait_status(
            lambda s: (
                s["phase"] == "Migrating"
                and s["live"]["parameters"].get("MigrationLcImageId") == world.new
            ),
            30,
            "phase 1 sent by the leader",
        )
        os.kill(leader.pid, 9)
        leader.proc.wait(timeout=10)  # type: ignore[union-attr]
        final = standby.wait_status(in_sync_on(world.new), 60, "the standby converging")
    assert not str(final["message"]).startswith(STANDBY), final["message"]
    assert final["revision"] == head
    by_token = update_starts_by_token(world.emulator)
    assert sorted(by_token.values()) == [1, 1], by_token  # migrate + switch, once each
    history = standby.get_json(f"/api/v1/stacks/{NAME}/history")["history"]
    assert history[0]["result"] == "succeeded", history  # the shared store's one rollout
