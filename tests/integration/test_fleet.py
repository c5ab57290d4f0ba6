"""A fleet rolled out from shared reads, on plain moto (no tags on groups, groups replaced on
every image change, updates complete at once): every stack converges through both phases and
the gate, and pays only for what it alone has."""

from __future__ import annotations

import collections
import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest

from reconciler import catalog, engine, spec
from reconciler.aws.clients import Clients
from reconciler.metrics import Metrics
from reconciler.model import Phase
from reconciler.store import Store
from tests.integration.conftest import REGION, Stack

N = 6  # above the batching threshold (BATCH_MIN), small enough to stay fast
BUCKET = "deploy-status"
PER_STACK = ("UpdateStack", "GetObject", "DescribeInstanceHealth")
# Rounds are not a clock: the shared reads are paced by wall time (fleet.DUTY), so on a
# loaded machine a round may find nothing new to read. Loops end on a condition or this.
DEADLINE = 60.0


def loaded(stack: Stack, image: str, revision: str, **rollout: object) -> catalog.LoadedSpec:
    doc = spec.StackDeployment.model_validate(
        {
            "apiVersion": "reconciler/v1",
            "kind": "StackDeployment",
            "metadata": {"name": stack.name.lower()},
            "spec": {
                "stackName": stack.name,
                "region": REGION,
                "image": image,
                "capacity": {"api": 1, "migration": 1},
                "migration": {"check": "s3", "location": f"s3://{BUCKET}/fleet"},
                "rollout": {"verifyHealth": True, **rollout},
            },
        }
    )
    return catalog.LoadedSpec(doc, f"deploy-specs/{stack.name}.yaml", revision, stale=False)


def write_record(stack: Stack, image: str, status: str = "succeeded") -> None:
    now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    body = {"image": image, "status": status, "startedAt": now, "updatedAt": now}
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=BUCKET, Key=f"fleet/{stack.name}/{image}.json", Body=json.dumps(body)
    )


def live(stack: Stack) -> dict[str, str]:
    cfn = boto3.client("cloudformation", region_name=REGION)
    found = cfn.describe_stacks(StackName=stack.name)["Stacks"][0]["Parameters"]
    return {p["ParameterKey"]: p.get("ParameterValue", "") for p in found}


@pytest.fixture
def fleet(make_stack: Callable[..., Stack]) -> list[Stack]:
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    return [make_stack(f"Fleet{i}") for i in range(N)]


@pytest.fixture
def eng(clients: Clients, tmp_path: Path) -> Iterator[engine.Engine]:
    with Store.in_state_dir(tmp_path) as store:
        yield engine.Engine(clients, store, Metrics())


def settle(eng: engine.Engine, specs: list[catalog.LoadedSpec]) -> None:
    for s in specs:  # as the daemon does: every spec is known before the first step
        eng.track(s)
    until = time.monotonic() + DEADLINE
    while True:
        results = [eng.step(s) for s in specs]
        if all(r.phase == Phase.IN_SYNC for r in results):
            return
        if time.monotonic() > until:
            raise AssertionError([f"{r.name}: {r.phase} {r.message}" for r in results])


Done = Callable[[list[engine.StepResult]], bool]


def all_in_sync(results: list[engine.StepResult]) -> bool:
    return all(r.phase == Phase.IN_SYNC for r in results)


def roll_out(
    eng: engine.Engine,
    fleet: list[Stack],
    worker: Callable[[Stack, str], None],
    done: Done = all_in_sync,
) -> list[str]:
    """Step every spec, round after round, as the daemon's ticks would; the worker writes a
    stack's record once phase 1 reached it. Returns each step's phase, in order."""
    specs = [loaded(s, s.new_image, "b" * 40) for s in fleet]
    phases: list[str] = []
    until = time.monotonic() + DEADLINE
    while True:
        results = [eng.step(s) for s in specs]
        phases += [f"{r.name}:{r.phase}" for r in results]
        for stack, r in zip(fleet, results, strict=True):
            if r.sent and live(stack)["MigrationDesiredCapacity"] == "1":
                worker(stack, stack.new_image)
        if done(results):
            return phases
        if time.monotonic() > until:
            raise AssertionError(phases[-N:])


def test_a_fleet_rolls_out_on_shared_reads_within_five_requests_per_stack(
    fleet: list[Stack], eng: engine.Engine, requests: list[tuple[str, str, str]]
) -> None:
    """Counted from the bump, with the daemon warm and InSync before it: two updates, one
    record read and one health read per stack, and shared reads that cost a fraction."""
    settle(eng, [loaded(s, s.old_image, "a" * 40) for s in fleet])
    requests.clear()

    roll_out(eng, fleet, write_record)

    for stack in fleet:
        params = live(stack)
        assert (params["LcImageId"], params["MigrationDesiredCapacity"]) == (stack.new_image, "0")
    calls = collections.Counter(op for _, op, _ in requests)
    per_stack = {op: calls[op] / N for op in PER_STACK}
    assert per_stack == {"UpdateStack": 2.0, "GetObject": 1.0, "DescribeInstanceHealth": 1.0}
    shared = sum(calls.values()) - sum(calls[op] for op in PER_STACK)
    # Each tick shares one read of stacks, groups, instances and records among all N.
    assert shared <= 4 * 4, calls
    assert "DescribeStackResources" not in calls  # the replaced groups were found anyway
    assert "DescribeStackEvents" not in calls


def test_no_stack_switches_before_its_own_record_succeeded(
    fleet: list[Stack], eng: engine.Engine
) -> None:
    """The worker writes a record for half the fleet only: the other half holds in
    Migrating with the API group on the old image, whatever their neighbours do."""
    settle(eng, [loaded(s, s.old_image, "a" * 40) for s in fleet])
    slow = {s.name for s in fleet[::2]}

    def worker(stack: Stack, image: str) -> None:
        if stack.name not in slow:
            write_record(stack, image)

    def others_done(results: list[engine.StepResult]) -> bool:
        mine = {r.name: r.phase for r in results}
        return all(
            mine[s.name.lower()] == (Phase.MIGRATING if s.name in slow else Phase.IN_SYNC)
            for s in fleet
        )

    roll_out(eng, fleet, worker, done=others_done)
    roll_out(eng, fleet, worker, done=lambda _: True)  # one more round changes nothing
    for stack in fleet:
        expected = stack.old_image if stack.name in slow else stack.new_image
        assert live(stack)["LcImageId"] == expected, stack.name
    for status in eng.statuses():
        if status.deployment.spec.stack_name in slow:
            assert status.phase == Phase.MIGRATING, status.message


def test_a_record_written_before_phase_one_does_not_count(
    fleet: list[Stack], eng: engine.Engine
) -> None:
    """A stale `succeeded` record from before phase 1 (a shared listing shows it at once)
    does not release the switch: the gate is keyed to the phase-1 start, as before."""
    settle(eng, [loaded(s, s.old_image, "a" * 40) for s in fleet])
    stale = dt.datetime(2020, 1, 1, tzinfo=dt.UTC).isoformat()
    for stack in fleet:
        body = {"image": stack.new_image, "status": "succeeded", "updatedAt": stale}
        boto3.client("s3", region_name=REGION).put_object(
            Bucket=BUCKET, Key=f"fleet/{stack.name}/{stack.new_image}.json", Body=json.dumps(body)
        )
    migrating = [
        lambda results: all(r.phase == Phase.MIGRATING for r in results),
        lambda _: True,  # and a round after that: still held
    ]
    for done in migrating:
        roll_out(eng, fleet, lambda stack, image: None, done=done)
    assert {s.phase for s in eng.statuses()} == {Phase.MIGRATING}
    assert {live(s)["LcImageId"] for s in fleet} == {s.old_image for s in fleet}


def test_a_stack_with_bad_resource_names_is_blocked_before_phase_one(
    fleet: list[Stack], eng: engine.Engine
) -> None:
    settle(eng, [loaded(s, s.old_image, "a" * 40) for s in fleet])
    doc = loaded(fleet[0], fleet[0].new_image, "b" * 40).deployment.model_dump(by_alias=True)
    doc["spec"]["resourceNames"] = {"apiGroup": "NoSuchGroup", "migrationGroup": "MigrationAsg"}
    bad = catalog.LoadedSpec(spec.StackDeployment.model_validate(doc), "f.yaml", "c" * 40, False)
    others = [loaded(s, s.new_image, "b" * 40) for s in fleet[1:]]
    until = time.monotonic() + DEADLINE
    while (result := eng.step(bad)).phase != Phase.BLOCKED and time.monotonic() < until:
        for s in others:
            eng.step(s)
    assert result.phase == Phase.BLOCKED
    assert "NoSuchGroup" in result.message
    assert live(fleet[0])["MigrationLcImageId"] == fleet[0].old_image


@pytest.mark.parametrize("rounds_before", [1, 2])
def test_a_restart_mid_rollout_resumes_every_stack_with_two_updates_each(
    fleet: list[Stack],
    clients: Clients,
    tmp_path: Path,
    requests: list[tuple[str, str, str]],
    rounds_before: int,
) -> None:
    """The fleet view keeps nothing durable: a new engine (empty caches) on the same store,
    after phase 1 or after the switch was sent, finishes every stack with exactly the two
    updates of a rollout and the switch after the record."""
    with Store.in_state_dir(tmp_path / "state") as store:
        first = engine.Engine(clients, store, Metrics())
        settle(first, [loaded(s, s.old_image, "a" * 40) for s in fleet])
        requests.clear()
        specs = [loaded(s, s.new_image, "b" * 40) for s in fleet]
        for _ in range(rounds_before):
            for stack, spec_ in zip(fleet, specs, strict=True):
                if first.step(spec_).sent and live(stack)["MigrationDesiredCapacity"] == "1":
                    write_record(stack, stack.new_image)
        restarted = engine.Engine(clients, store, Metrics())  # as after a crash
        settle(restarted, specs)
        updates = sum(1 for _, op, _ in requests if op == "UpdateStack")
        assert updates == 2 * N
        for stack in fleet:
            (run,) = [r for r in store.history(stack.name.lower()) if r.image == stack.new_image]
            assert run.result == "succeeded" and run.switch_started_at is not None
            assert run.migrated_at is not None and run.migrated_at <= run.switch_started_at
