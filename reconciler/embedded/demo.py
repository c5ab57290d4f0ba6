"""`reconciler demo`: the whole rollout on an embedded AWS, printed as it happens.

Rules of this file:
- Everything is real but the cloud: the daemon code path of `reconciler run`, a real git
  repository with a merge commit, a signed webhook over HTTP, the status API read over
  HTTP. Only AWS is the in-process emulator, and the migration instance is played here.
- Each scenario exits 0 when the daemon did the right thing, and says what that was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import hmac
import io
import json
import os
import pathlib
import secrets
import subprocess
import sys
import tempfile
import time
import typing
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from reconciler import daemon, logs, settings
from reconciler.embedded.emulator import Emulator
from reconciler.embedded.github import FakeGitHub
from reconciler.embedded.migration import MigrationWorker

STACK = "Stack1"
NAME = "biglearn-api"
BUCKET = "deploy-status"
SCENARIOS = ("happy", "migration-fails", "update-rolls-back", "paused", "fleet", "bump")
FLEET = "api"
FLEET_MEMBERS = 5  # the canary (the demo's own stack and spec) and four more

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
    EnvName: demo
  migration:
    check: s3
    location: s3://{bucket}/{name}
    timeout: 5m
  rollout:
    timeout: 5m
    verifyHealth: true
  interval: 2s
{paused}"""


# The bump scenario's spec follows every image named biglearn-api-*: the stack's image is
# not one of them, so the first such image baked is newer.
IMAGE_POLICY = """\
  imagePolicy:
    ec2:
      owners: [self]
      filters: {name: ["biglearn-api-*"]}
"""
FORGE_REPO = "demo/specs"

MEMBER_SPEC = """\
apiVersion: reconciler/v1
kind: StackDeployment
metadata:
  name: {name}
  labels: {{app: api, tier: {tier}}}
spec:
  stackName: {stack}
  region: us-east-1
  image: {image}
  capacity:
    api: 2
    migration: 1
  parameters:
    EnvName: demo
  migration:
    check: s3
    location: s3://{bucket}/{name}
    timeout: 5m
  rollout:
    timeout: 5m
    verifyHealth: true
    alarms: [{name}-5xx]
    bake: 30s
    autoRollback: true
  interval: 2s
"""

FLEET_SPEC = """\
apiVersion: reconciler/v1
kind: Fleet
metadata:
  name: api
spec:
  selector: {matchLabels: {app: api}}
  steps:
    - matchLabels: {tier: canary}
      maxConcurrent: 1
    - maxConcurrent: 50%
  bake: 10s
  failureBudget: 0
"""


@dataclasses.dataclass
class Scene:
    """What the demo set up, for the scenario to play with."""

    emulator: Emulator
    daemon: daemon.Daemon
    repo: pathlib.Path
    old: str
    new: str
    base_url: str
    secret: str
    out: TextIO
    started: float = dataclasses.field(default_factory=time.monotonic)
    forge: FakeGitHub | None = None

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f}s] {text}", file=self.out, flush=True)

    def status(self) -> dict[str, Any]:
        url = f"{self.base_url}/api/v1/stacks/{NAME}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 (loopback http)
                data: dict[str, Any] = json.load(r)
                return data
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
            # The daemon has not read git yet: nothing to show so far.
            return {
                "phase": "-",
                "message": "the daemon has not read the spec yet",
                "migration": {"status": None, "progress": None},
                "live": {"parameters": {}},
            }

    def live(self) -> dict[str, str]:
        cfn = self.emulator.client("cloudformation")
        stack = cfn.describe_stacks(StackName=STACK)["Stacks"][0]
        return {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", [])}


def run(scenario: str = "happy", keep_running: bool = False, timeout: float = 120.0) -> int:
    """Play one scenario; 0 when the daemon did the right thing."""
    if scenario not in SCENARIOS:
        sys.stderr.write(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}\n")
        return 2
    _isolate_from_real_aws()
    # The timeline is the demo's output; the daemon's own log would drown it.
    logs.configure("json", "warning", stream=typing.cast(typing.TextIO, _Discard()))
    with (
        tempfile.TemporaryDirectory(prefix="reconciler-demo-") as tmp,
        _scene(pathlib.Path(tmp), scenario) as scene,
    ):
        scene.say(f"scenario {scenario}: {_INTRO[scenario]}")
        ok = _PLAYS[scenario](scene, time.monotonic() + timeout)
        _print_final(scene)
        if keep_running:
            scene.say(f"status page: {scene.base_url}/")
            scene.say(
                f"still running: curl {scene.base_url}/metrics ; "
                f"reconciler status --listen {scene.base_url.removeprefix('http://')} ; Ctrl-C ends"
            )
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
        return 0 if ok else 1


class _Discard(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


_INTRO = {
    "bump": "a new AMI is baked; the daemon opens a bump pull request, the demo merges it, "
    "the rollout runs",
    "fleet": "five stacks in a fleet; the canary's alarm fires during its bake: it rolls back, "
    "the fleet halts, and the other four are never touched",
    "happy": "an AMI bump is merged; migrations run first, then the API group switches",
    "migration-fails": "the migration for the new image fails; the API group must stay",
    "update-rolls-back": "the switch of the API group rolls back in CloudFormation",
    "paused": "the bump is merged with `paused` set; nothing may change until resumed",
}


def _isolate_from_real_aws() -> None:
    # The demo must never reach a real account, whatever the user's shell has configured.
    os.environ.update(
        AWS_ACCESS_KEY_ID="demo",
        AWS_SECRET_ACCESS_KEY="demo",  # noqa: S106 (a placeholder the emulator accepts)
        AWS_SESSION_TOKEN="demo",  # noqa: S106
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    for var in ("AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ENDPOINT_URL"):
        os.environ.pop(var, None)


@contextlib.contextmanager
def _scene(tmp: pathlib.Path, scenario: str = "happy") -> Iterator[Scene]:
    out = sys.stdout
    started = time.monotonic()
    bumping = scenario == "bump"
    with Emulator(update_seconds=1.5) as emulator, contextlib.ExitStack() as stack:
        old, new = emulator.register_image("biglearn-v1"), emulator.register_image("biglearn-v2")
        emulator.ensure_bucket(BUCKET)
        emulator.create_stack(STACK, _stack_parameters(old))
        repo = _git_repo(tmp / "repo", _spec(old, IMAGE_POLICY if bumping else ""))
        forge = stack.enter_context(FakeGitHub(FORGE_REPO, origin=repo)) if bumping else None
        secret = secrets.token_hex(16)
        conf = settings.Settings(
            state_dir=tmp / "state",
            git=settings.GitSettings(repo=str(repo), poll_interval=dt.timedelta(minutes=5)),
            aws=settings.AwsSettings(endpoint_url=emulator.endpoint_url),
            scheduling=settings.SchedulingSettings(active_interval=dt.timedelta(seconds=0.5)),
            images=_image_settings(forge),
            http=settings.HttpSettings(
                listen="127.0.0.1:0",
                webhook_secret=secret,
                allow_unauthenticated_controls=True,
            ),
        )
        d = daemon.Daemon(conf)
        d.start()
        host, port = d.server.address
        scene = Scene(
            emulator, d, repo, old, new, f"http://{host}:{port}", secret, out, started, forge=forge
        )
        scene.say(f"AWS emulator at {emulator.endpoint_url}; stack {STACK} runs {old}")
        scene.say(f"daemon at {scene.base_url} (status: /api/v1/stacks, metrics: /metrics)")
        if forge is not None:
            scene.say(f"fake GitHub at {forge.api_url} for {FORGE_REPO}")
        try:
            yield scene
        finally:
            d.stop()


def _image_settings(forge: FakeGitHub | None) -> settings.ImageSettings:
    if forge is None:
        return settings.ImageSettings()
    # A one-second interval: the demo shows the loop, not the five-minute default.
    return settings.ImageSettings(
        image_interval=dt.timedelta(seconds=1),
        forge="github",
        forge_api_url=forge.api_url,
        forge_repo=FORGE_REPO,
        forge_token=forge.token,
    )


def _stack_parameters(image: str) -> dict[str, str]:
    return {
        "EnvName": "demo",
        "KeyName": "demo-key",
        "RepoUrl": "https://example.invalid/biglearn.git",
        "BranchNameOrSha": "main",
        "LcImageId": image,
        "MigrationLcImageId": image,
        "MigrationDesiredCapacity": "0",
        "Asg1DesiredCapacity": "2",
    }


def _spec(image: str, paused: str = "") -> str:
    return SPEC.format(name=NAME, stack=STACK, image=image, bucket=BUCKET, paused=paused)


# --- git ------------------------------------------------------------------------------


def _git(repo: pathlib.Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Demo Developer",
        "GIT_AUTHOR_EMAIL": "dev@example.invalid",
        "GIT_COMMITTER_NAME": "Demo Developer",
        "GIT_COMMITTER_EMAIL": "dev@example.invalid",
    }
    done = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env
    )
    return done.stdout.strip()


def _git_repo(repo: pathlib.Path, spec_text: str) -> pathlib.Path:
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    (repo / "deploy-specs").mkdir()
    (repo / "deploy-specs" / f"{NAME}.yaml").write_text(spec_text)
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "biglearn-api: initial spec")
    return repo


def merge_bump(scene: Scene, spec_text: str, title: str) -> str:
    """Commit on a branch and merge it with a merge commit, as a merged pull request does."""
    _git(scene.repo, "checkout", "-q", "-b", "bump-image")
    (scene.repo / "deploy-specs" / f"{NAME}.yaml").write_text(spec_text)
    _git(scene.repo, "commit", "-q", "-am", title)
    _git(scene.repo, "checkout", "-q", "main")
    _git(
        scene.repo, "merge", "-q", "--no-ff", "-m", f"Merge pull request #1: {title}", "bump-image"
    )
    return _git(scene.repo, "rev-parse", "HEAD")


def send_webhook(scene: Scene, head: str) -> int:
    body = json.dumps({"ref": "refs/heads/main", "after": head}).encode()
    signature = "sha256=" + hmac.new(scene.secret.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(  # noqa: S310 (loopback http)
        f"{scene.base_url}/hooks/git",
        data=body,
        method="POST",
        headers={
            "X-Hub-Signature-256": signature,
            "X-GitHub-Event": "push",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return int(response.status)


# --- watching -------------------------------------------------------------------------


def watch(
    scene: Scene,
    deadline: float,
    done: Callable[[dict[str, Any]], bool],
    on_change: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Print every change of phase, message or migration progress until `done`."""
    seen: tuple[Any, ...] = ()
    while True:
        status = scene.status()
        key = (status["phase"], status["message"], status["migration"]["progress"])
        if key != seen:
            seen = key
            progress = status["migration"]
            extra = (
                f" [migration {progress['status']} {progress['progress']}]"
                if progress["status"]
                else ""
            )
            scene.say(f"{status['phase']:<16} {status['message']}{extra}")
            if on_change is not None:
                on_change(status)
        if done(status):
            return status
        if time.monotonic() > deadline:
            scene.say("timed out waiting for the daemon")
            return status
        time.sleep(0.2)  # the status API is polled, as a person would refresh it


def _in_sync_on(image: str) -> Callable[[dict[str, Any]], bool]:
    return lambda s: s["phase"] == "InSync" and s["live"]["parameters"].get("LcImageId") == image


def _bump(scene: Scene, deadline: float, paused: str = "") -> None:
    watch(scene, deadline, _in_sync_on(scene.old))
    head = merge_bump(scene, _spec(scene.new, paused), f"Deploy {scene.new}")
    code = send_webhook(scene, head)
    scene.say(
        f"merged pull request #1 ({head[:12]}): image {scene.old} -> {scene.new}; "
        f"webhook answered {code}"
    )


# --- scenarios ------------------------------------------------------------------------


def _happy(scene: Scene, deadline: float) -> bool:
    with MigrationWorker(scene.emulator, STACK, f"s3://{BUCKET}/{NAME}", steps=4, step_seconds=0.5):
        _bump(scene, deadline)
        final = watch(scene, deadline, _in_sync_on(scene.new))
    ok = _converged(scene, scene.new) and final["phase"] == "InSync"
    scene.say(
        "rollout converged: the API group runs the new image, migrations ran first"
        if ok
        else "rollout did NOT converge"
    )
    return ok


def _migration_fails(scene: Scene, deadline: float) -> bool:
    worker = MigrationWorker(
        scene.emulator,
        STACK,
        f"s3://{BUCKET}/{NAME}",
        steps=3,
        step_seconds=0.4,
        fail_images={scene.new},
    )
    with worker:
        _bump(scene, deadline)
        final = watch(scene, deadline, lambda s: s["phase"] == "Failed")
    live = scene.live()
    ok = final["phase"] == "Failed" and live["LcImageId"] == scene.old
    scene.say(
        f"the daemon held the API group on {live['LcImageId']} because the migration failed, "
        f"stopped the migration group (capacity {live['MigrationDesiredCapacity']}) and will retry "
        f"at {final['failures']['nextRetryAt']}"
        if ok
        else "the daemon did NOT hold the API group"
    )
    return ok


def _update_rolls_back(scene: Scene, deadline: float) -> bool:
    armed: list[bool] = []

    def arm(status: dict[str, Any]) -> None:
        # The migration group is up: the next update is the switch; make it roll back.
        if (
            not armed
            and status["phase"] == "Migrating"
            and status["live"]["status"] == "UPDATE_COMPLETE"
        ):
            scene.emulator.fail_next_update(STACK, "Instance i-demo failed its ELB health check")
            armed.append(True)
            scene.say("(the emulator will roll the next update back)")

    with MigrationWorker(scene.emulator, STACK, f"s3://{BUCKET}/{NAME}", steps=6, step_seconds=0.5):
        _bump(scene, deadline)
        final = watch(scene, deadline, lambda s: s["phase"] == "Failed", on_change=arm)
    live = scene.live()
    ok = final["phase"] == "Failed" and live["LcImageId"] == scene.old
    scene.say(
        f"CloudFormation rolled the switch back; the daemon recorded the failure, the API group "
        f"is on {live['LcImageId']}, and the image is held until a new commit or "
        "`reconciler retry`"
        if ok
        else "the daemon did NOT record the rollback"
    )
    return ok


def _paused(scene: Scene, deadline: float) -> bool:
    before = scene.live()
    with MigrationWorker(scene.emulator, STACK, f"s3://{BUCKET}/{NAME}", steps=3, step_seconds=0.4):
        _bump(scene, deadline, paused='  paused: {reason: "demo: change freeze"}\n')
        watch(scene, deadline, lambda s: s["phase"] == "Paused")
        held = time.monotonic() + 3
        watch(scene, min(held, deadline), lambda s: False)
        untouched = scene.live() == before
        scene.say(
            f"paused for 3 s: stack parameters untouched = {untouched}; "
            "resuming by merging a commit that clears the flag"
        )
        head = merge_bump_again(scene, _spec(scene.new), "Resume the rollout")
        send_webhook(scene, head)
        final = watch(scene, deadline, _in_sync_on(scene.new))
    ok = untouched and final["phase"] == "InSync" and _converged(scene, scene.new)
    scene.say(
        "nothing moved while paused; the rollout ran once resumed"
        if ok
        else "pause was NOT honoured"
    )
    return ok


def merge_bump_again(scene: Scene, spec_text: str, title: str) -> str:
    _git(scene.repo, "branch", "-q", "-D", "bump-image")
    return merge_bump(scene, spec_text, title)


def _members() -> list[tuple[str, str]]:
    """(spec name, stack) of the fleet: the demo's own stack is the canary."""
    return [(NAME, STACK)] + [(f"{NAME}-{i}", f"Stack{i}") for i in range(2, FLEET_MEMBERS + 1)]


def _fleet_files(image: str) -> dict[str, str]:
    files = {"deploy-specs/fleets/api.yaml": FLEET_SPEC}
    for name, stack in _members():
        tier = "canary" if name == NAME else "main"
        files[f"deploy-specs/{name}.yaml"] = MEMBER_SPEC.format(
            name=name, tier=tier, stack=stack, image=image, bucket=BUCKET
        )
    return files


def _commit_files(scene: Scene, files: dict[str, str], title: str, branch: str) -> str:
    """On a branch, merged with a merge commit (as a merged pull request is)."""
    _git(scene.repo, "checkout", "-q", "-b", branch)
    for path, text in files.items():
        target = scene.repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    _git(scene.repo, "add", ".")
    _git(scene.repo, "commit", "-q", "-m", title)
    _git(scene.repo, "checkout", "-q", "main")
    _git(scene.repo, "merge", "-q", "--no-ff", "-m", f"Merge pull request: {title}", branch)
    return _git(scene.repo, "rev-parse", "HEAD")


def _get(scene: Scene, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{scene.base_url}{path}", timeout=5) as r:  # noqa: S310
        data: dict[str, Any] = json.load(r)
        return data


def _stack_params(scene: Scene, stack: str) -> dict[str, str]:
    cfn = scene.emulator.client("cloudformation")
    found = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    return {p["ParameterKey"]: p["ParameterValue"] for p in found.get("Parameters", [])}


def _fleet(scene: Scene, deadline: float) -> bool:
    for name, stack in _members():
        scene.emulator.put_alarm(f"{name}-5xx")
        if stack != STACK:
            scene.emulator.create_stack(stack, _stack_parameters(scene.old))
    head = _commit_files(scene, _fleet_files(scene.old), "A fleet of five, canary first", "fleet")
    send_webhook(scene, head)
    scene.say(f"five stacks on {scene.old}, one fleet `api`: canary first, then 50% at a time")

    def all_in_sync(image: str) -> bool:
        stacks = _get(scene, "/api/v1/stacks")["stacks"]
        return len(stacks) == FLEET_MEMBERS and all(
            s["phase"] == "InSync" and s["live"].get("image") == image for s in stacks
        )

    while not all_in_sync(scene.old):
        if time.monotonic() > deadline:
            scene.say("timed out waiting for the fleet to be in sync")
            return False
        time.sleep(0.2)  # the status API is polled, as a person would refresh it
    before = {stack: _stack_params(scene, stack) for _, stack in _members()[1:]}
    fired: list[bool] = []
    shown: list[bool] = []

    def fire(status: dict[str, Any]) -> None:
        if not shown and status["phase"] == "Migrating":
            other = _get(scene, f"/api/v1/stacks/{NAME}-2")
            scene.say(f"  meanwhile {NAME}-2: {other['phase']} {other['message']}")
            shown.append(True)
        # The new image is bad: once the canary bakes on it, its 5xx alarm goes off.
        if not fired and status["reason"] == "baking_alarms":
            scene.emulator.set_alarm_state(f"{NAME}-5xx", "ALARM", "5xx rate 31% > 5%")
            fired.append(True)
            scene.say(f"(the canary's alarm {NAME}-5xx goes into ALARM: the image is bad)")

    with MigrationWorker(scene.emulator, STACK, f"s3://{BUCKET}/{NAME}", steps=4, step_seconds=0.4):
        head = _commit_files(scene, _fleet_files(scene.new), f"Deploy {scene.new}", "bump")
        send_webhook(scene, head)
        scene.say(f"merged one commit bumping all five specs to {scene.new}")
        final = watch(
            scene,
            deadline,
            lambda s: s["phase"] == "Failed" and s["live"].get("image") == scene.old,
            on_change=fire,
        )
        halted = _wait_halted(scene, deadline)
    waiting = _get(scene, f"/api/v1/stacks/{NAME}-2")
    scene.say(f"{NAME}-2: {waiting['phase']} {waiting['message']}")
    untouched = all(_stack_params(scene, stack) == before[stack] for stack in before)
    failed_by_alarm = (
        final["failures"]["code"] == "rolled_back" and "ALARM during the bake" in final["message"]
    )
    ok = bool(fired) and failed_by_alarm and halted is not None and untouched
    scene.say(
        f"the canary rolled back to {scene.old}; fleet {FLEET} halted ({halted}); the other four "
        f"stacks were never touched: {untouched}"
        if ok
        else "the fleet did NOT hold: "
        + json.dumps({"final": final.get("message"), "halted": halted})
    )
    return ok


def _wait_halted(scene: Scene, deadline: float) -> str | None:
    while time.monotonic() < deadline:
        fleet = _get(scene, f"/api/v1/fleets/{FLEET}")
        if fleet["halted"]:
            return str(fleet["halt"]["reason"])
        time.sleep(0.2)
    return None


def _image_bump(scene: Scene, deadline: float) -> bool:
    forge = scene.forge
    assert forge is not None, "the bump scenario's scene has a forge"
    watch(scene, deadline, _in_sync_on(scene.old))
    followed = _git(scene.repo, "rev-parse", "main")
    baked = scene.emulator.register_image("biglearn-api-2026.12.01")
    scene.say(f"a new AMI is baked: {baked} (biglearn-api-2026.12.01)")
    pull = _wait_pull(forge, deadline)
    if pull is None:
        scene.say("no bump pull request was opened")
        return False
    scene.say(f"the daemon pushed {pull['head']['ref']} and opened pull request #{pull['number']}")
    scene.say(f"  {pull['title']}; its body is the plan against the live stack:")
    for line in str(pull["body"]).splitlines():
        if line.startswith("| `"):
            scene.say(f"  {line}")
    untouched = (
        _git(scene.repo, "rev-parse", "main") == followed and scene.live()["LcImageId"] == scene.old
    )
    scene.say(f"main unchanged and the stack untouched until the merge: {untouched}")
    with MigrationWorker(scene.emulator, STACK, f"s3://{BUCKET}/{NAME}", steps=4, step_seconds=0.5):
        head = forge.merge(pull["number"])
        code = send_webhook(scene, head)
        scene.say(f"merged pull request #{pull['number']} ({head[:12]}); webhook answered {code}")
        final = watch(scene, deadline, _in_sync_on(baked))
    ok = untouched and _converged(scene, baked) and final["phase"] == "InSync"
    scene.say(
        "bump rolled out: from a baked AMI to a merged pull request to the API group"
        if ok
        else "the bump did NOT roll out"
    )
    return ok


def _wait_pull(forge: FakeGitHub, deadline: float) -> dict[str, Any] | None:
    """The first open pull request on the fake forge, polled as a person refreshes."""
    while time.monotonic() < deadline:
        opened = [p for p in forge.pulls() if p["state"] == "open"]
        if opened:
            return opened[0]
        time.sleep(0.2)
    return None


_PLAYS: dict[str, Callable[[Scene, float], bool]] = {
    "bump": _image_bump,
    "happy": _happy,
    "migration-fails": _migration_fails,
    "update-rolls-back": _update_rolls_back,
    "paused": _paused,
    "fleet": _fleet,
}


def _converged(scene: Scene, image: str) -> bool:
    """The API group's instances run `image` and the migration group is back to 0."""
    live = scene.live()
    if live["LcImageId"] != image or live["MigrationDesiredCapacity"] != "0":
        return False
    cfn, asg, ec2 = (scene.emulator.client(s) for s in ("cloudformation", "autoscaling", "ec2"))
    resources = cfn.describe_stack_resources(StackName=STACK)["StackResources"]
    group = next(r["PhysicalResourceId"] for r in resources if r["LogicalResourceId"] == "Asg1")
    found = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    ids = [i["InstanceId"] for i in found[0]["Instances"]] if found else []
    if not ids:
        return False
    reservations = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    images = {i["ImageId"] for r in reservations for i in r["Instances"]}
    return images == {image}


def _print_final(scene: Scene) -> None:
    live = scene.live()
    keys = (
        "LcImageId",
        "Asg1DesiredCapacity",
        "MigrationLcImageId",
        "MigrationDesiredCapacity",
        "EnvName",
    )
    scene.say("final parameters: " + ", ".join(f"{k}={live.get(k)}" for k in keys))
    history = urllib.request.urlopen(f"{scene.base_url}/api/v1/stacks/{NAME}/history", timeout=5)  # noqa: S310
    with history:
        for row in json.load(history)["history"]:
            scene.say(
                f"history: {row['fromImage']} -> {row['image']}: {row['result'] or 'in progress'}"
                + (f" ({row['reason']})" if row.get("reason") else "")
            )
