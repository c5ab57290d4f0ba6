"""Two real `reconciler run` replicas on one lock table roll out one fleet: whichever replica
drives which member, never more than the step's maxConcurrent are under way at once (the
slot is taken in the shared store, in the same transaction as the start), and the fleet
converges."""

from __future__ import annotations

import datetime as dt
import itertools
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from reconciler.embedded import Emulator
from reconciler.store import create_table
from tests.e2e.conftest import UPDATE_SECONDS, World, stack_parameters, wait_until
from tests.integration.gitrepo import GitRepo
from tests.replicas.test_two_replicas import STANDBY, TABLE, Replica

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # a minute of two daemons: make test-slow

MEMBERS = 4

MEMBER = """\
apiVersion: reconciler/v1
kind: StackDeployment
metadata:
  name: web-{i}
  labels: {{app: web}}
spec:
  stackName: Web{i}
  region: us-east-1
  image: {image}
  capacity: {{api: 1, migration: 1}}
  parameters: {{EnvName: e2e}}
  rollout: {{timeout: 5m, verifyHealth: false}}
  interval: 1s
"""

FLEET = """\
apiVersion: reconciler/v1
kind: Fleet
metadata:
  name: web
spec:
  selector: {matchLabels: {app: web}}
  steps:
    - maxConcurrent: 1
"""


def files(image: str, members: range = range(MEMBERS)) -> dict[str, str]:
    specs = {f"deploy-specs/web-{i}.yaml": MEMBER.format(i=i, image=image) for i in members}
    return {"deploy-specs/fleet.yaml": FLEET, **specs}


@pytest.fixture
def world(tmp_path: pathlib.Path) -> Iterator[World]:
    with Emulator(update_seconds=UPDATE_SECONDS) as emulator:
        old, new, newer = (emulator.register_image(f"web-v{i}") for i in (1, 2, 3))
        for i in range(MEMBERS):
            emulator.create_stack(f"Web{i}", stack_parameters(old))
        create_table(emulator.client("dynamodb"), TABLE)
        repo = GitRepo(tmp_path / "repo")
        repo.commit("the first half of the fleet", files(old, range(MEMBERS // 2)))
        yield World(emulator, repo, old, new, newer, tmp_path)  # type: ignore[arg-type]


@pytest.fixture
def replicas(world: World) -> Iterator[list[Replica]]:
    """Replica a holds the first half of the fleet, replica b the second: a starts while git
    has only the first half; b starts once the second half is committed, and takes it before
    a hears of it."""
    started: list[Replica] = []
    try:
        a = Replica(world, "a").start()
        started.append(a)
        a.wait_ready()
        wait_until(lambda: len(stacks(a)) == MEMBERS // 2, 30, "replica a managing its half")
        head = world.repo.commit("the second half", files(world.old))  # type: ignore[attr-defined]
        b = Replica(world, "b").start()
        started.append(b)
        b.wait_ready()
        wait_until(lambda: all_on(b, world.old, MEMBERS), 60, "replica b holding its half")
        assert a.webhook(head) == 202
        wait_until(lambda: all_on(a, world.old, MEMBERS), 60, "replica a seeing the whole fleet")
        yield started
    finally:
        for r in started:
            r.kill()
            print(f"--- replica {r.replica_id} log ---\n{r.log()[-20000:]}")


def stacks(r: Replica) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in r.get_json("/api/v1/stacks")["stacks"]}


def all_on(r: Replica, image: str, count: int) -> bool:
    found = stacks(r)
    return len(found) == count and all(
        s["live"].get("image") == image and s["phase"] == "InSync"
        for s in found.values()
        if not str(s["message"]).startswith(STANDBY)
    )


def _time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_two_replicas_never_run_more_than_the_steps_limit(
    world: World, replicas: list[Replica]
) -> None:
    a = replicas[0]
    head = world.repo.commit("Deploy to the fleet", files(world.new))  # type: ignore[attr-defined]
    for r in replicas:
        assert r.webhook(head) == 202

    def converged() -> bool:
        return all(
            any(
                r["result"] == "succeeded"
                for r in a.get_json(f"/api/v1/stacks/web-{i}/history")["history"]
            )
            for i in range(MEMBERS)
        )

    wait_until(converged, 120, "every member rolled out")
    # Who drove whom: the replica whose status for a member is not "driven by replica ...".
    drivers = {
        name: next(
            r.replica_id
            for r in replicas
            if not str(stacks(r)[name]["message"]).startswith(STANDBY)
        )
        for name in (f"web-{i}" for i in range(MEMBERS))
    }
    print(f"drivers: {drivers}")
    assert set(drivers.values()) == {"a", "b"}, drivers  # so the count crossed replicas
    rollouts = []
    for i in range(MEMBERS):
        (row,) = [
            r
            for r in a.get_json(f"/api/v1/stacks/web-{i}/history")["history"]
            if r["image"] == world.new
        ]
        assert row["result"] == "succeeded", row
        rollouts.append((_time(row["startedAt"]), _time(row["finishedAt"]), f"web-{i}"))
    rollouts.sort()
    for (_, ended, first), (began, _, second) in itertools.pairwise(rollouts):
        assert began >= ended, f"{second} started at {began} while {first} ran until {ended}"
    fleet = a.get_json("/api/v1/fleets/web")
    assert not fleet["halted"] and fleet["failed"] == []
