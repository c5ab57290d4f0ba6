"""The rollout of CONTRACT section 2 driven through the real command line.

Every test runs `reconciler.cli.main([...])` in-process against moto, with the specs in a
real local git repository (tests/integration/gitrepo.py) and the test playing the migration
instance (CONTRACT section 3). Assertions are on the stack's live parameters, as
DescribeStacks reports them, and on the command's output and exit code.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from reconciler import catalog, cli, engine
from tests.integration.conftest import REGION, Stack
from tests.integration.gitrepo import GitRepo

SPEC_FILE = "deploy-specs/biglearn-api.yaml"
NAME = "biglearn-api"
BUCKET = "deploy-status"
S3_LOCATION = f"s3://{BUCKET}/biglearn-api"
SSM_LOCATION = "ssm:/deploy-status/x"
UNPINNED = ("RepoUrl", "BranchNameOrSha", "KeyName")


# --- the pieces every test uses --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Run:
    """One command's outcome."""

    code: int
    out: str
    err: str


@dataclasses.dataclass
class World:
    """A moto stack, a git repository of specs, a state dir, and the CLI between them."""

    stack: Stack
    repo: GitRepo
    state_dir: Path
    capsys: pytest.CaptureFixture[str]
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)  # spec_yaml fields

    def cli(self, command: str, *args: str) -> Run:
        self.capsys.readouterr()  # drop what came before
        code = cli.main(
            [
                command,
                "--repo",
                str(self.repo.path),
                "--state-dir",
                str(self.state_dir),
                "--log-format",
                "json",
                *args,
            ]
        )
        captured = self.capsys.readouterr()
        return Run(code, captured.out, captured.err)

    def apply(self, *args: str) -> Run:
        return self.cli("apply", *args)

    def commit_spec(self, image: str, message: str = "spec", **fields: Any) -> str:
        text = spec_yaml(self.stack, image, **{**self.defaults, **fields})
        return self.repo.commit(message, {SPEC_FILE: text})

    def params(self) -> dict[str, str]:
        return live_parameters(self.stack.name)


def spec_yaml(
    stack: Stack,
    image: str,
    *,
    check: str = "s3",
    location: str = S3_LOCATION,
    api: int | str = 1,
    pinned: dict[str, str] | None = None,
    extra: str = "",
) -> str:
    """A spec document for `stack`; `pinned` are its `parameters` (default: EnvName only)."""
    pins = {"EnvName": "blah"} if pinned is None else pinned
    pin_lines = "".join(f"    {k}: {v}\n" for k, v in pins.items()) or "    {}\n"
    return (
        "apiVersion: reconciler/v1\n"
        "kind: StackDeployment\n"
        "metadata:\n"
        f"  name: {NAME}\n"
        "spec:\n"
        f"  stackName: {stack.name}\n"
        f"  region: {REGION}\n"
        f"  image: {image}\n"
        "  capacity:\n"
        f"    api: {api}\n"
        "    migration: 1\n"
        "  parameters:\n"
        f"{pin_lines}"
        "  migration:\n"
        f"    check: {check}\n"
        f"    location: {location}\n"
        "    timeout: 30m\n"
        "  rollout:\n"
        "    timeout: 45m\n"
        f"{extra}"
    )


def live_parameters(stack_name: str) -> dict[str, str]:
    cfn = boto3.client("cloudformation", region_name=REGION)
    (described,) = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    return {p["ParameterKey"]: p.get("ParameterValue", "") for p in described["Parameters"]}


def stack_events(stack_name: str) -> int:
    cfn = boto3.client("cloudformation", region_name=REGION)
    return len(cfn.describe_stack_events(StackName=stack_name)["StackEvents"])


def rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def record_json(image: str, status: str, updated_at: dt.datetime | None = None) -> str:
    updated = updated_at or utcnow()
    return json.dumps(
        {
            "image": image,
            "status": status,
            "progress": "40/40" if status == "succeeded" else "12/40",
            "instanceId": "i-0abc",
            "startedAt": rfc3339(updated - dt.timedelta(seconds=1)),
            "updatedAt": rfc3339(updated),
            "detail": f"migrations {status}",
        }
    )


def write_s3_record(
    stack: Stack, image: str, status: str, updated_at: dt.datetime | None = None
) -> None:
    """Play the migration instance: s3://BUCKET/PREFIX/STACKNAME/IMAGE.json."""
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=BUCKET,
        Key=f"biglearn-api/{stack.name}/{image}.json",
        Body=record_json(image, status, updated_at).encode(),
    )


def write_ssm_record(
    stack: Stack, image: str, status: str, updated_at: dt.datetime | None = None
) -> None:
    """Play the migration instance: SSM parameter /PATH/STACKNAME/IMAGE."""
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=f"/deploy-status/x/{stack.name}/{image}",
        Value=record_json(image, status, updated_at),
        Type="String",
        Overwrite=True,
    )


def api_group_name(stack_name: str) -> str:
    cfn = boto3.client("cloudformation", region_name=REGION)
    (resource,) = cfn.describe_stack_resources(StackName=stack_name, LogicalResourceId="Asg1")[
        "StackResources"
    ]
    return resource["PhysicalResourceId"]


def api_instance_images(stack_name: str) -> set[str]:
    group = api_group_name(stack_name)
    asg = boto3.client("autoscaling", region_name=REGION)
    (described,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])[
        "AutoScalingGroups"
    ]
    ids = [i["InstanceId"] for i in described["Instances"]]
    ec2 = boto3.client("ec2", region_name=REGION)
    reservations = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    return {i["ImageId"] for r in reservations for i in r["Instances"]}


@pytest.fixture
def world(stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[World]:
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    yield World(stack, GitRepo(tmp_path / "specs"), tmp_path / "state", capsys)


def assert_in_sync(w: World, image: str) -> None:
    run = w.apply()
    assert run.code == 0, run
    assert f"{NAME}: InSync" in run.out
    assert "[update" not in run.out
    assert w.params()["LcImageId"] == image


def drive_rollout(w: World, write_record: Callable[..., None]) -> None:
    """The rollout of test 1 and 2, with the record written by `write_record`."""
    old, new = w.stack.old_image, w.stack.new_image
    before = w.params()
    keep = {k: before[k] for k in UNPINNED}

    w.commit_spec(old, "spec at the running image")
    events = stack_events(w.stack.name)
    first = w.apply()
    assert first.code == 0, first
    assert f"{NAME}: InSync" in first.out
    assert "[update" not in first.out
    assert stack_events(w.stack.name) == events
    assert w.params() == before

    w.commit_spec(new, "bump the AMI")
    phase1 = w.apply()
    assert phase1.code == 0, phase1
    assert f"{NAME}: Migrating" in phase1.out
    assert "[update sent]" in phase1.out
    p = w.params()
    assert p["MigrationLcImageId"] == new
    assert p["MigrationDesiredCapacity"] == "1"
    assert p["LcImageId"] == old
    assert {k: p[k] for k in UNPINNED} == keep

    held = w.apply()  # no record yet
    assert held.code == 0, held
    assert f"{NAME}: Migrating" in held.out
    assert "[update" not in held.out
    assert w.params()["LcImageId"] == old

    write_record(w.stack, new, "running")
    running = w.apply()
    assert running.code == 0, running
    assert f"{NAME}: Migrating" in running.out
    assert "running" in running.out
    assert w.params()["LcImageId"] == old

    write_record(w.stack, new, "succeeded")
    switch = w.apply()
    assert switch.code == 0, switch
    assert f"{NAME}: UpdatingApi" in switch.out
    assert "[update sent]" in switch.out
    p = w.params()
    assert p["LcImageId"] == new
    assert p["MigrationDesiredCapacity"] == "0"
    assert p["Asg1DesiredCapacity"] == "1"
    assert p["EnvName"] == "blah"
    assert {k: p[k] for k in UNPINNED} == keep

    done = settle_to_in_sync(w, new)
    # Verify passed: every API instance runs the new AMI and is InService in the ELB.
    assert f"rollout of {new} succeeded" in done
    assert api_instance_images(w.stack.name) == {new}
    assert_in_sync(w, new)
    p = w.params()
    assert {k: p[k] for k in UNPINNED} == keep


def settle_to_in_sync(w: World, image: str, steps: int = 4) -> str:
    """Apply until InSync (the switch settles, then verify passes): a few steps at most;
    returns the output of the step that reached InSync."""
    runs = []
    for _ in range(steps):
        run = w.apply()
        runs.append(run)
        if f"{NAME}: InSync" in run.out:
            assert run.code == 0, run
            assert w.params()["LcImageId"] == image
            return run.out
    pytest.fail(f"not InSync after {steps} applies: {[r.out for r in runs]}")


# --- 1, 2: the full rollout ------------------------------------------------------------


def test_rollout_through_repeated_apply_with_s3_record(world: World) -> None:
    """An AMI bump moves the migration group first, holds the API image until an S3
    record says `succeeded`, then switches; unpinned parameters keep their values."""
    drive_rollout(world, write_s3_record)


def test_rollout_through_repeated_apply_with_ssm_record(world: World) -> None:
    """The same rollout gated by an SSM parameter record (check: ssm)."""
    world.defaults.update(check="ssm", location=SSM_LOCATION)
    drive_rollout(world, write_ssm_record)


# --- 3, 4: what the spec does not pin keeps its live value -----------------------------


def start_phase1(w: World) -> None:
    """Commit the AMI bump and apply once: the migration group moves to the new image."""
    w.commit_spec(w.stack.new_image, "bump the AMI")
    run = w.apply()
    assert run.code == 0, run
    assert "[update sent]" in run.out
    assert w.params()["MigrationLcImageId"] == w.stack.new_image
    assert w.params()["LcImageId"] == w.stack.old_image


def update_outside(stack_name: str, **changes: str) -> None:
    """A person changes stack parameters with the AWS CLI, not through git."""
    cfn = boto3.client("cloudformation", region_name=REGION)
    params = live_parameters(stack_name)
    cfn.update_stack(
        StackName=stack_name,
        UsePreviousTemplate=True,
        Parameters=[
            {"ParameterKey": k, "ParameterValue": changes[k]}
            if k in changes
            else {"ParameterKey": k, "UsePreviousValue": True}
            for k in sorted(params)
        ],
    )
    assert {k: live_parameters(stack_name)[k] for k in changes} == changes


def test_live_api_capacity_keeps_a_group_capacity_set_outside_the_spec(world: World) -> None:
    """With `capacity.api: live`, the switch sends the API group's DesiredCapacity as set
    through Auto Scaling (3), not the stack parameter's 1."""
    world.defaults.update(api="live")
    start_phase1(world)
    group = api_group_name(world.stack.name)
    boto3.client("autoscaling", region_name=REGION).set_desired_capacity(
        AutoScalingGroupName=group, DesiredCapacity=3, HonorCooldown=False
    )
    assert world.params()["Asg1DesiredCapacity"] == "1"

    write_s3_record(world.stack, world.stack.new_image, "succeeded")
    switch = world.apply()
    assert switch.code == 0, switch
    assert "[update sent]" in switch.out
    p = world.params()
    assert p["LcImageId"] == world.stack.new_image
    assert p["Asg1DesiredCapacity"] == "3"
    assert p["MigrationDesiredCapacity"] == "0"
    settle_to_in_sync(world, world.stack.new_image)
    assert world.params()["Asg1DesiredCapacity"] == "3"


def test_live_api_capacity_keeps_a_stack_parameter_changed_outside_the_daemon(
    world: World,
) -> None:
    """With `capacity.api: live`, an Asg1DesiredCapacity=2 update made by a person during
    the migration phase is what the switch sends."""
    world.defaults.update(api="live")
    start_phase1(world)
    update_outside(world.stack.name, Asg1DesiredCapacity="2")
    write_s3_record(world.stack, world.stack.new_image, "succeeded")
    settle_to_in_sync(world, world.stack.new_image, steps=5)
    p = world.params()
    assert p["Asg1DesiredCapacity"] == "2"
    assert p["MigrationDesiredCapacity"] == "0"


def test_unpinned_parameter_changed_outside_survives_both_updates(world: World) -> None:
    """RepoUrl and BranchNameOrSha, changed on the stack by a person and not listed in the
    spec, keep the person's values through phase 1 and phase 2 (UsePreviousValue)."""
    changed = {"RepoUrl": "https://example.invalid/fork.git", "BranchNameOrSha": "hotfix-7"}
    update_outside(world.stack.name, **changed)

    start_phase1(world)
    assert {k: world.params()[k] for k in changed} == changed

    write_s3_record(world.stack, world.stack.new_image, "succeeded")
    settle_to_in_sync(world, world.stack.new_image, steps=5)
    p = world.params()
    assert {k: p[k] for k in changed} == changed
    assert p["KeyName"] == world.stack.parameters["KeyName"]


# --- 5: nothing to do ----------------------------------------------------------------


def test_spec_matching_the_stack_sends_nothing(world: World) -> None:
    """A spec equal to what runs: `apply` reports InSync, exits 0, and the stack has no
    new event and no LastUpdatedTime."""
    world.commit_spec(world.stack.old_image, "describe what runs")
    cfn = boto3.client("cloudformation", region_name=REGION)
    before = cfn.describe_stacks(StackName=world.stack.name)["Stacks"][0]
    events = stack_events(world.stack.name)

    for _ in range(2):
        run = world.apply()
        assert run.code == 0, run
        assert run.out.strip().startswith(f"{NAME}: InSync")
        assert "[update" not in run.out

    after = cfn.describe_stacks(StackName=world.stack.name)["Stacks"][0]
    assert after["StackStatus"] == before["StackStatus"] == "CREATE_COMPLETE"
    assert after.get("LastUpdatedTime") == before.get("LastUpdatedTime")
    assert stack_events(world.stack.name) == events
    assert world.params() == world.stack.parameters


# --- 6, 7: the gate ------------------------------------------------------------------


def test_failed_migration_holds_the_api_image_and_stops_the_migration_group(
    world: World,
) -> None:
    """A `failed` record: exit 1, phase Failed, LcImageId stays old, the migration group
    is stopped; a further apply backs off without sending anything."""
    start_phase1(world)
    write_s3_record(world.stack, world.stack.new_image, "failed")

    failed = world.apply()
    assert failed.code == 1, failed
    assert f"{NAME}: Failed" in failed.out
    assert "migrations failed" in failed.out  # the record's detail
    p = world.params()
    assert p["LcImageId"] == world.stack.old_image
    assert p["MigrationDesiredCapacity"] == "0"

    events = stack_events(world.stack.name)
    again = world.apply()
    assert again.code == 1, again
    assert f"{NAME}: Failed" in again.out
    assert "[update" not in again.out
    assert stack_events(world.stack.name) == events
    assert world.params()["LcImageId"] == world.stack.old_image


def test_record_older_than_phase1_does_not_count(world: World) -> None:
    """A `succeeded` record whose updatedAt is before phase 1 started (a leftover of an
    earlier attempt) does not open the gate: the API image stays old."""
    stale = utcnow() - dt.timedelta(hours=1)
    write_s3_record(world.stack, world.stack.new_image, "succeeded", updated_at=stale)
    start_phase1(world)
    for _ in range(2):
        run = world.apply()
        assert run.code == 0, run
        assert f"{NAME}: Migrating" in run.out
        assert "[update" not in run.out
        assert world.params()["LcImageId"] == world.stack.old_image

    # The same record rewritten now does count.
    write_s3_record(world.stack, world.stack.new_image, "succeeded")
    switch = world.apply()
    assert "[update sent]" in switch.out, switch
    assert world.params()["LcImageId"] == world.stack.new_image


def test_new_revision_retries_a_failed_rollout_at_once(world: World) -> None:
    """After a failed migration, a new git revision of the spec starts phase 1 again at
    once (no backoff wait); the old `failed` record predates it and does not count."""
    start_phase1(world)
    write_s3_record(world.stack, world.stack.new_image, "failed")
    assert world.apply().code == 1
    assert world.params()["MigrationDesiredCapacity"] == "0"

    world.repo.commit(
        "retry",
        {
            SPEC_FILE: "# retry after fixing the migration\n"
            + spec_yaml(world.stack, world.stack.new_image)
        },
    )
    retry = world.apply()
    assert retry.code == 0, retry
    assert f"{NAME}: Migrating" in retry.out
    assert "[update sent]" in retry.out
    p = world.params()
    assert p["MigrationDesiredCapacity"] == "1"
    assert p["LcImageId"] == world.stack.old_image

    write_s3_record(world.stack, world.stack.new_image, "succeeded")
    settle_to_in_sync(world, world.stack.new_image, steps=5)


def test_rollout_resumes_from_the_stack_after_the_state_dir_is_lost(world: World) -> None:
    """Level-triggered: with phase 1 live and the store gone (a new state dir), `apply`
    adopts the rollout from the stack, counts records from the stack's last update, and
    switches once the record says `succeeded`."""
    start_phase1(world)
    world.state_dir = world.state_dir.with_name("state-after-restart")

    held = world.apply()
    assert held.code == 0, held
    assert f"{NAME}: Migrating" in held.out
    assert world.params()["LcImageId"] == world.stack.old_image

    write_s3_record(world.stack, world.stack.new_image, "succeeded")
    settle_to_in_sync(world, world.stack.new_image, steps=5)
    assert world.params()["MigrationDesiredCapacity"] == "0"


# --- 8, 9: invalid specs -------------------------------------------------------------


def commit_broken_bump(w: World) -> int:
    """Reconcile a valid spec to InSync, then commit an AMI bump with a typo'd key in it;
    returns the line of the unknown key."""
    w.commit_spec(w.stack.old_image, "valid")
    assert_in_sync(w, w.stack.old_image)
    broken = spec_yaml(w.stack, w.stack.new_image, extra="  colour: blue\n")
    w.repo.commit("typo", {SPEC_FILE: broken})
    return broken.splitlines().index("  colour: blue") + 1


def test_invalid_newer_spec_is_reported_by_line_and_leaves_the_stack_alone(
    world: World,
) -> None:
    """A broken commit (an unknown key next to an AMI bump) is reported as
    `file:line: field: message`, `apply` exits 1, and nothing is sent to the stack."""
    line = commit_broken_bump(world)
    events = stack_events(world.stack.name)

    run = world.apply()
    assert run.code == 1, run
    assert f"error: {SPEC_FILE}:{line}: spec.colour: unknown key" in run.err
    assert "[update" not in run.out
    assert stack_events(world.stack.name) == events
    p = world.params()
    assert p["LcImageId"] == p["MigrationLcImageId"] == world.stack.old_image

    plan = world.cli("plan", "--format", "json")
    assert plan.code == 1
    (error,) = json.loads(plan.out)["errors"]
    assert error.startswith(f"{SPEC_FILE}:{line}: spec.colour: unknown key")
    assert world.params() == p


def test_apply_reconciles_the_last_valid_version_of_a_broken_spec(world: World) -> None:
    """CONTRACT 1: a spec that fails validation changes nothing and its stack keeps being
    reconciled against the last valid version of the file. `apply` and `plan` must still
    show the spec (InSync on the last valid image), not drop it.

    Fails today: cli._local builds an empty Catalog for each command, so the last valid
    version (an earlier commit) is unknown and the spec is not managed at all
    ("no specs to apply")."""
    commit_broken_bump(world)

    run = world.apply()
    assert f"{NAME}: InSync" in run.out, run

    plan = world.cli("plan", "--format", "json")
    rows = json.loads(plan.out)["stacks"]
    assert [(r["name"], r["desiredImage"]) for r in rows] == [(NAME, world.stack.old_image)]


def test_validate_reports_each_error_with_file_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`reconciler validate` on an unknown key, a malformed AMI id and a negative capacity:
    exit 1 and one `file:line: field: message` line for each, at the offending line."""
    stack = Stack("Stack1", "ami-12345678", "ami-87654321", {})
    folder = tmp_path / "deploy-specs"
    folder.mkdir()
    texts = {
        "unknown.yaml": spec_yaml(stack, "ami-12345678", extra="  colour: blue\n"),
        "ami.yaml": spec_yaml(stack, "ami-XYZ"),
        "capacity.yaml": spec_yaml(stack, "ami-12345678", api=-1),
    }
    for name, text in texts.items():
        (folder / name).write_text(text.replace(NAME, name.removesuffix(".yaml")))

    def line_of(name: str, needle: str) -> int:
        return texts[name].splitlines().index(needle) + 1

    capsys.readouterr()
    code = cli.main(["validate", "--log-format", "json", str(folder)])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    expected = {
        f"{folder / 'unknown.yaml'}:{line_of('unknown.yaml', '  colour: blue')}: spec.colour:",
        f"{folder / 'ami.yaml'}:{line_of('ami.yaml', '  image: ami-XYZ')}: spec.image:",
        f"{folder / 'capacity.yaml'}:{line_of('capacity.yaml', '    api: -1')}: spec.capacity.api:",
    }
    for prefix in expected:
        assert sum(line.startswith(prefix) for line in out) == 1, (prefix, out)
    assert len(out) == 3, out


# --- 10: plan ------------------------------------------------------------------------


def test_plan_shows_desired_live_and_next_step_and_changes_nothing(world: World) -> None:
    """`plan --format json|markdown|text` names the desired and the live image and phase 1
    as the next step, and sends nothing: parameters and events are as before, and a
    following `apply` still starts phase 1."""
    world.commit_spec(world.stack.new_image, "bump the AMI")
    events = stack_events(world.stack.name)
    old, new = world.stack.old_image, world.stack.new_image

    as_json = world.cli("plan", "--format", "json")
    assert as_json.code == 0, as_json
    (row,) = json.loads(as_json.out)["stacks"]
    assert row["name"] == NAME
    assert row["stackName"] == world.stack.name
    assert row["desiredImage"] == new
    assert row["liveImage"] == old
    assert row["stackStatus"] == "CREATE_COMPLETE"
    assert row["phase"] == "Migrating"
    assert row["next"].startswith("phase 1:")
    assert row["updateKind"] == "migrate"
    assert row["update"] == {"MigrationLcImageId": new, "MigrationDesiredCapacity": "1"}

    markdown = world.cli("plan", "--format", "markdown")
    assert markdown.code == 0, markdown
    assert "| spec | stack | desired image | live image | phase | next step |" in markdown.out
    row_md = f"| `{NAME}` | {world.stack.name} | `{new}` | `{old}` | Migrating | phase 1:"
    assert row_md in markdown.out

    text = world.cli("plan", "--format", "text")
    assert text.code == 0, text
    assert f"{NAME} ({world.stack.name}): {old} -> {new}" in text.out
    assert "phase: Migrating; next: phase 1:" in text.out
    changes = f"MigrationDesiredCapacity=1, MigrationLcImageId={new}"
    assert f"would update (migrate): {changes}" in text.out

    assert world.params() == world.stack.parameters
    assert stack_events(world.stack.name) == events
    start_phase1(world)  # plan stored nothing that would change what apply does


# --- 11: apply --wait ----------------------------------------------------------------


def test_apply_wait_converges_once_the_migration_instance_reports(world: World) -> None:
    """`apply --wait` drives the rollout in the foreground; a background migration
    instance writes `succeeded` once it sees phase 1 live; exit 0 on the new image."""
    new = world.stack.new_image
    world.commit_spec(new, "bump the AMI")
    cfn = boto3.client("cloudformation", region_name=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    seen: list[str] = []

    def migration_instance() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            (described,) = cfn.describe_stacks(StackName=world.stack.name)["Stacks"]
            p = {x["ParameterKey"]: x.get("ParameterValue") for x in described["Parameters"]}
            if p["MigrationLcImageId"] == new and p["MigrationDesiredCapacity"] == "1":
                s3.put_object(
                    Bucket=BUCKET,
                    Key=f"biglearn-api/{world.stack.name}/{new}.json",
                    Body=record_json(new, "succeeded").encode(),
                )
                seen.append("wrote")
                return
            time.sleep(0.05)  # polling the stack, bounded by the deadline
        seen.append("timed out")

    thread = threading.Thread(target=migration_instance, daemon=True)
    thread.start()
    run = world.apply("--wait", "--interval", "0.2", "--timeout", "60s")
    thread.join(timeout=35)
    assert seen == ["wrote"]
    assert run.code == 0, run
    lines = run.out.splitlines()
    assert any("Migrating" in line for line in lines), lines
    assert f"{NAME}: InSync" in lines[-1]
    p = world.params()
    assert p["LcImageId"] == new
    assert p["MigrationDesiredCapacity"] == "0"


def commit_specs(w: World, stacks: list[Stack]) -> list[str]:
    """One spec per stack (`api-1`, `api-2`, ...), each bumping its stack's AMI, in one commit."""
    files = {}
    for number, stack in enumerate(stacks, 1):
        name = f"api-{number}"
        text = spec_yaml(stack, stack.new_image).replace(f"  name: {NAME}\n", f"  name: {name}\n")
        files[f"deploy-specs/{name}.yaml"] = text
    w.repo.commit("bump the AMI of every stack", files)
    return [f"api-{number}" for number in range(1, len(stacks) + 1)]


def migration_instances(stacks: list[Stack], seen: list[str]) -> threading.Thread:
    """In the background, each stack's migration instance writes `succeeded` once it sees
    phase 1 live on its stack; `seen` gets one `wrote STACK` each, or `timed out`."""

    def run() -> None:
        waiting = {s.name: s for s in stacks}
        deadline = time.monotonic() + 30
        while waiting and time.monotonic() < deadline:
            for stack in list(waiting.values()):
                p = live_parameters(stack.name)
                if (
                    p["MigrationLcImageId"] == stack.new_image
                    and p["MigrationDesiredCapacity"] == "1"
                ):
                    write_s3_record(stack, stack.new_image, "succeeded")
                    seen.append(f"wrote {waiting.pop(stack.name).name}")
            time.sleep(0.05)  # polling the stacks, bounded by the deadline
        if waiting:
            seen.append("timed out")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def in_lockstep(monkeypatch: pytest.MonkeyPatch, specs: int) -> None:
    """Each spec's first two steps start only when every spec has come to that step: an
    `apply --wait` that steps one spec at a time breaks the barrier instead of passing.
    A spec's second step comes after its first has printed its line, so passing the second
    barrier also means every spec's first line is out."""
    barrier = threading.Barrier(specs, timeout=10)
    calls: dict[str, int] = {}
    guard = threading.Lock()
    step = engine.Engine.step

    def stepped(self: engine.Engine, loaded: catalog.LoadedSpec) -> engine.StepResult:
        with guard:
            calls[loaded.deployment.name] = count = calls.get(loaded.deployment.name, 0) + 1
        if count <= 2:
            barrier.wait()
        return step(self, loaded)

    monkeypatch.setattr(engine.Engine, "step", stepped)


def assert_converged_interleaved(w: World, run: Run, stacks: list[Stack], names: list[str]) -> None:
    """Exit 0, every stack on its new image, and every spec's first update printed before
    any spec reached InSync."""
    assert run.code == 0, run
    lines = [line.split(" ", 1)[1] for line in run.out.splitlines()]  # drop HH:MM:SS
    first_update = {
        n: next(
            i
            for i, line in enumerate(lines)
            if line.startswith(f"{n}: ") and "[update sent]" in line
        )
        for n in names
    }
    first_in_sync = min(i for i, line in enumerate(lines) if ": InSync: " in line)
    assert max(first_update.values()) < first_in_sync, lines
    for n in names:
        last = [line for line in lines if line.startswith(f"{n}: ")][-1]
        assert last.startswith(f"{n}: InSync: "), lines
    assert [live_parameters(s.name)["LcImageId"] for s in stacks] == [s.new_image for s in stacks]


def test_apply_wait_steps_specs_at_once_and_interleaves_their_progress(
    world: World, make_stack: Callable[..., Stack], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`apply --wait --workers 3` on three specs that each need a rollout steps all three
    at once (their first steps meet at a barrier), prints every spec's phase-1 update
    before any spec is InSync, and converges all three: exit 0, new images live."""
    stacks = [world.stack, make_stack("Stack2"), make_stack("Stack3")]
    names = commit_specs(world, stacks)
    in_lockstep(monkeypatch, len(stacks))
    seen: list[str] = []
    thread = migration_instances(stacks, seen)
    run = world.apply("--wait", "--workers", "3", "--interval", "0.2", "--timeout", "60s")
    thread.join(timeout=35)
    assert sorted(seen) == [f"wrote {s.name}" for s in stacks]
    assert_converged_interleaved(world, run, stacks, names)


def test_apply_wait_with_fewer_workers_than_specs_starves_none(
    world: World, make_stack: Callable[..., Stack]
) -> None:
    """`apply --wait --workers 1` on three specs takes them in turns, not one rollout after
    another: every spec's phase-1 update is printed before any spec is InSync."""
    stacks = [world.stack, make_stack("Stack2"), make_stack("Stack3")]
    names = commit_specs(world, stacks)
    seen: list[str] = []
    thread = migration_instances(stacks, seen)
    run = world.apply("--wait", "--workers", "1", "--interval", "0.2", "--timeout", "60s")
    thread.join(timeout=35)
    assert sorted(seen) == [f"wrote {s.name}" for s in stacks]
    assert_converged_interleaved(world, run, stacks, names)


def test_apply_wait_timeout_names_the_specs_not_finished(world: World) -> None:
    """With no migration record ever written, `apply --wait --timeout 1s` ends with exit 1
    and one line (besides the JSON logs) naming the spec still Migrating."""
    world.commit_spec(world.stack.new_image, "bump the AMI")
    run = world.apply("--wait", "--interval", "0.2", "--timeout", "1s")
    assert run.code == 1, run
    (timed_out,) = [line for line in run.err.splitlines() if not line.startswith("{")]  # no logs
    assert timed_out == f"timed out after 1s; not finished: {NAME} (Migrating)"


@pytest.mark.parametrize(
    ("args", "wanted"),
    [
        (("--timeout", "900"), "--timeout: '900' is not a duration such as 90s, 30m, 2h or 1h30m"),
        (("--timeout", "0s"), "--timeout: a duration must be longer than zero"),
        (
            ("--interval", "-1"),
            "--interval: '-1' is not a number of seconds above zero, such as 2 or 0.5",
        ),
        (
            ("--interval", "abc"),
            "--interval: 'abc' is not a number of seconds above zero, such as 2 or 0.5",
        ),
        (
            ("--interval", "nan"),
            "--interval: 'nan' is not a number of seconds above zero, such as 2 or 0.5",
        ),
        (("--workers", "0"), "--workers: '0' is not a whole number of at least 1"),
    ],
)
def test_apply_wait_rejects_a_bad_option_in_one_line_with_exit_2(
    world: World, args: tuple[str, str], wanted: str
) -> None:
    """A malformed `--timeout`, `--interval` or `--workers`: exit 2 and one line naming the
    option and what it wants, no traceback, and nothing sent to the stack."""
    world.commit_spec(world.stack.new_image, "bump the AMI")
    events = stack_events(world.stack.name)
    run = world.apply("--wait", *args)
    assert run.code == 2, run
    assert run.err.splitlines() == [f"reconciler: {wanted}"]
    assert run.out == ""
    assert stack_events(world.stack.name) == events
