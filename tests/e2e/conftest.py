"""Fixtures for the end-to-end tests: a real `reconciler run` process against the emulator.

Rules of this file:
- The daemon is a subprocess started the way an operator starts it (`reconciler run` with
  flags); the AWS emulator, the migration instance and the git repository live in the test
  process, so tests can look behind the daemon's back (stack events, records, parameters).
- No test reaches a real AWS account: fake credentials, the host's AWS config hidden, and
  every call goes to the emulator's endpoint.
- Nothing sleeps where a condition can be polled: waits poll against a deadline. Where a
  test asserts that something does NOT happen, it watches for a bounded window (`hold`).
- Every daemon started here is killed in a finalizer; its log is attached to a failing
  test's report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.embedded import Emulator

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
STACK = "Stack1"
NAME = "biglearn-api"
BUCKET = "deploy-status"
LOCATION = f"s3://{BUCKET}/{NAME}"
TOKEN = "e2e-token"
SECRET = "e2e-webhook-secret"
UPDATE_SECONDS = 0.5
ACTIVE_INTERVAL = "1s"  # reconcile period during a rollout: four ticks make one, not 20 s
POLL = 0.1  # seconds between looks at the daemon's status; cheap loopback calls

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
    EnvName: e2e
  migration:
    check: s3
    location: {location}
    timeout: 5m
  rollout:
    timeout: 5m
    verifyHealth: true
  interval: {interval}
{paused}"""

T = TypeVar("T")


def spec_text(image: str, paused: str | None = None, interval: str = "1s") -> str:
    """The spec document; `paused` is a reason to set `paused: {reason: ...}`."""
    paused_line = f"  paused: {{reason: {json.dumps(paused)}}}\n" if paused else ""
    return SPEC.format(
        name=NAME,
        stack=STACK,
        image=image,
        location=LOCATION,
        interval=interval,
        paused=paused_line,
    )


def wait_until(condition: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll `condition` until it returns something other than None (or False)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL)


def hold(seconds: float, check: Callable[[], None]) -> None:
    """Run `check` repeatedly for `seconds`: a bounded watch that something does not happen."""
    deadline = time.monotonic() + seconds
    while True:
        check()
        if time.monotonic() > deadline:
            return
        time.sleep(POLL)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a child: fake AWS credentials, no RECONCILER_* from the shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RECONCILER_"))}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def reconciler_command() -> list[str]:
    script = pathlib.Path(sys.executable).parent / "reconciler"
    return [str(script)] if script.exists() else [sys.executable, "-m", "reconciler.cli"]


# --- git ------------------------------------------------------------------------------


class GitRepo:
    """A local repository holding the spec, changed the way merged pull requests change it."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self._branches = 0

    def git(self, *args: str) -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "E2E Developer",
            "GIT_AUTHOR_EMAIL": "dev@example.invalid",
            "GIT_COMMITTER_NAME": "E2E Developer",
            "GIT_COMMITTER_EMAIL": "dev@example.invalid",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        done = subprocess.run(
            ["git", "-C", str(self.path), *args],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
        return done.stdout.strip()

    def init(self, text: str) -> str:
        self.path.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")
        (self.path / "deploy-specs").mkdir()
        self._write(text)
        self.git("add", ".")
        self.git("commit", "-q", "-m", f"{NAME}: initial spec")
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    def _write(self, text: str) -> None:
        (self.path / "deploy-specs" / f"{NAME}.yaml").write_text(text, encoding="utf-8")

    def merge(self, text: str, title: str) -> str:
        """Commit on a branch, merge it with --no-ff as a merged pull request; the merge sha."""
        self._branches += 1
        branch = f"change-{self._branches}"
        self.git("checkout", "-q", "-b", branch)
        self._write(text)
        self.git("commit", "-q", "-am", title)
        self.git("checkout", "-q", "main")
        self.git("merge", "-q", "--no-ff", "-m", f"Merge pull request #{self._branches}", branch)
        return self.head()


# --- the world the daemon acts on -----------------------------------------------------


@dataclasses.dataclass
class World:
    """The emulator with Stack1 on the old image, and the git repository with its spec."""

    emulator: Emulator
    repo: GitRepo
    old: str
    new: str
    newer: str
    tmp: pathlib.Path

    def live(self) -> dict[str, str]:
        cfn = self.emulator.client("cloudformation")
        stack = cfn.describe_stacks(StackName=STACK)["Stacks"][0]
        return {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", [])}

    def update_starts(self) -> int:
        """How many stack updates started (UPDATE_IN_PROGRESS events of the stack itself)."""
        cfn = self.emulator.client("cloudformation")
        events: list[dict[str, Any]] = []
        for page in cfn.get_paginator("describe_stack_events").paginate(StackName=STACK):
            events.extend(page["StackEvents"])
        return sum(
            1
            for e in events
            if e["ResourceType"] == "AWS::CloudFormation::Stack"
            and e["ResourceStatus"] == "UPDATE_IN_PROGRESS"
        )

    def migration_record(self, image: str) -> dict[str, Any] | None:
        s3 = self.emulator.client("s3")
        try:
            body = s3.get_object(Bucket=BUCKET, Key=f"{NAME}/{STACK}/{image}.json")["Body"]
        except s3.exceptions.NoSuchKey:
            return None
        record: dict[str, Any] = json.loads(body.read())
        return record


def stack_parameters(image: str) -> dict[str, str]:
    return {
        "EnvName": "e2e",
        "KeyName": "e2e-key",
        "RepoUrl": "https://example.invalid/biglearn.git",
        "BranchNameOrSha": "main",
        "LcImageId": image,
        "MigrationLcImageId": image,
        "MigrationDesiredCapacity": "0",
        "Asg1DesiredCapacity": "2",
    }


@pytest.fixture
def world(tmp_path: pathlib.Path) -> Iterator[World]:
    with Emulator(update_seconds=UPDATE_SECONDS) as emulator:
        old, new, newer = (emulator.register_image(f"biglearn-v{i}") for i in (1, 2, 3))
        emulator.ensure_bucket(BUCKET)
        emulator.create_stack(STACK, stack_parameters(old))
        repo = GitRepo(tmp_path / "repo")
        repo.init(spec_text(old))
        yield World(emulator, repo, old, new, newer, tmp_path)


# --- the daemon process ---------------------------------------------------------------


class DaemonProcess:
    """One `reconciler run` subprocess and the ways to talk to it."""

    def __init__(self, world: World, state_dir: pathlib.Path, log: pathlib.Path) -> None:
        self.world = world
        self.state_dir = state_dir
        self.log_path = log
        self.port = free_port()
        self.listen = f"127.0.0.1:{self.port}"
        self.base_url = f"http://{self.listen}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        args = [
            *reconciler_command(),
            "run",
            "--repo",
            str(self.world.repo.path),
            "--state-dir",
            str(self.state_dir),
            "--listen",
            self.listen,
            "--endpoint-url",
            self.world.emulator.endpoint_url,
            "--log-format",
            "json",
            "--poll-interval",
            "60s",
            "--active-interval",
            ACTIVE_INTERVAL,
            "--webhook-secret",
            SECRET,
            "--token",
            TOKEN,
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

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"the daemon exited with {self.proc.returncode}")
            try:
                return self.get_code("/readyz") == 200
            except OSError:
                return False

        wait_until(ready, timeout, "the daemon's /readyz")

    def terminate(self, timeout: float) -> int:
        """SIGTERM, then the exit code within `timeout` seconds."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    # --- HTTP

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        request = urllib.request.Request(
            self.base_url + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def get_code(self, path: str) -> int:
        return self.request("GET", path)[0]

    def get_json(self, path: str) -> Any:
        code, body = self.request("GET", path)
        assert code == 200, f"GET {path}: {code} {body!r}"
        return json.loads(body)

    def status(self) -> dict[str, Any]:
        data: dict[str, Any] = self.get_json(f"/api/v1/stacks/{NAME}")
        return data

    def metric(self, metric: str, /, **labels: str) -> float | None:
        """The value of one sample of /metrics, None when there is no such series."""
        text = self.request("GET", "/metrics")[1].decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                wanted = all(sample.labels.get(k) == v for k, v in labels.items())
                if sample.name == metric and wanted:
                    return float(sample.value)
        return None

    def webhook(self, head: str, secret: str | None = SECRET) -> int:
        body = json.dumps({"ref": "refs/heads/main", "after": head}).encode()
        headers = {"X-GitHub-Event": "push", "Content-Type": "application/json"}
        if secret is not None:
            digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Hub-Signature-256"] = f"sha256={digest}"
        return self.request("POST", "/hooks/git", body, headers)[0]

    def cli(self, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
        """`reconciler ARGS --listen <this daemon> [--token T]`, as an operator runs it."""
        extra = ["--listen", self.listen] + (["--token", token] if token else [])
        return subprocess.run(
            [*reconciler_command(), *args, *extra],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=30,
            check=False,
            cwd=self.world.tmp,
        )

    # --- waiting on the daemon

    def wait_status(
        self, done: Callable[[dict[str, Any]], bool], timeout: float, what: str
    ) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def check() -> bool:
            nonlocal found
            code, body = self.request("GET", f"/api/v1/stacks/{NAME}")
            if code != 200:
                return False
            found = json.loads(body)
            return done(found)

        try:
            wait_until(check, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last status: {json.dumps(found, indent=1)}") from None
        return found


def in_sync_on(image: str) -> Callable[[dict[str, Any]], bool]:
    return lambda s: s["phase"] == "InSync" and s["live"]["parameters"].get("LcImageId") == image


DaemonFactory = Callable[..., DaemonProcess]


@pytest.fixture
def start_daemon(world: World, request: pytest.FixtureRequest) -> Iterator[DaemonFactory]:
    """Start `reconciler run` processes; every one is killed when the test ends."""
    started: list[DaemonProcess] = []
    request.node.e2e_daemons = started  # read by pytest_runtest_makereport below

    def start(state_dir: pathlib.Path | None = None, ready: bool = True) -> DaemonProcess:
        n = len(started) + 1
        d = DaemonProcess(
            world, state_dir or world.tmp / "state", world.tmp / f"daemon-{n}.log"
        ).start()
        started.append(d)
        if ready:
            d.wait_ready()
        return d

    yield start
    for d in started:
        with contextlib.suppress(Exception):
            d.kill()


@pytest.fixture
def daemon(start_daemon: DaemonFactory) -> DaemonProcess:
    """A daemon that has read git and reached AWS, the stack InSync on the old image."""
    d = start_daemon()
    d.wait_status(in_sync_on(d.world.old), 30, "InSync on the old image")
    return d


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the log of every daemon a failing test started to its report."""
    report = yield
    daemons: list[DaemonProcess] = getattr(item, "e2e_daemons", [])
    if report.failed:
        for i, d in enumerate(daemons, 1):
            report.sections.append((f"daemon {i} log ({d.log_path})", d.log()[-20000:]))
    return report
