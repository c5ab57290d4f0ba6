"""Fixtures for the fault tests: an Engine in-process, against the emulator, on a test clock.

Rules of this file:
- The Engine reaches the emulator over HTTP, as the daemon reaches AWS, with fake
  credentials and the host's AWS config hidden; no test reaches a real account.
- Time that the planner judges (backoff, migration timeout) comes from `FaultWorld.clock`,
  which a test moves forward; the emulator's own updates still take real (short) time.
- Every AWS call is counted twice: by the daemon's metric (`reconciler_aws_requests_total`)
  and by the emulator's server-side count, so a retry storm shows whichever side hides it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from reconciler import aws, catalog, engine, planner, spec
from reconciler.embedded import Emulator
from reconciler.metrics import Metrics
from reconciler.store import Store

STACK = "Stack1"
NAME = "biglearn-api"
BUCKET = "deploy-status"
LOCATION = f"s3://{BUCKET}/{NAME}"
UPDATE_SECONDS = 0.2  # long enough to see *_IN_PROGRESS, short for the suite
REVISION = "f" * 40
# A quick policy, so a test sees a few retries within minutes of the test clock.
POLICY = planner.Policy(dt.timedelta(seconds=30), dt.timedelta(minutes=8))


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    """Fake keys, and no host config that could point boto3 at a real account."""
    for var in ("AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


def stack_parameters(image: str) -> dict[str, str]:
    return {
        "EnvName": "faults",
        "KeyName": "faults-key",
        "RepoUrl": "https://example.invalid/biglearn.git",
        "BranchNameOrSha": "main",
        "LcImageId": image,
        "MigrationLcImageId": image,
        "MigrationDesiredCapacity": "0",
        "Asg1DesiredCapacity": "1",
    }


def loaded_spec(image: str, migration_timeout: str = "30m") -> catalog.LoadedSpec:
    doc = spec.StackDeployment.model_validate(
        {
            "apiVersion": "reconciler/v1",
            "kind": "StackDeployment",
            "metadata": {"name": NAME},
            "spec": {
                "stackName": STACK,
                "region": "us-east-1",
                "image": image,
                "capacity": {"api": 1, "migration": 1},
                "migration": {"check": "s3", "location": LOCATION, "timeout": migration_timeout},
                "rollout": {"timeout": "45m", "verifyHealth": False},
            },
        }
    )
    return catalog.LoadedSpec(doc, f"deploy-specs/{NAME}.yaml", REVISION, stale=False)


class TestClock:
    """The planner's `now`: starts at the real time, moves only when a test says."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, delta: dt.timedelta) -> None:
        self.now += delta


@dataclasses.dataclass
class FaultWorld:
    """The emulator with Stack1 on `old`, an Engine on a test clock, and what it counts."""

    emulator: Emulator
    metrics: Metrics
    store: Store
    clock: TestClock
    old: str
    new: str
    engine: engine.Engine = dataclasses.field(init=False)

    def advance(self, delta: dt.timedelta) -> None:
        self.clock.advance(delta)

    def new_engine(self, max_attempts: int = 2) -> engine.Engine:
        """An Engine with fresh clients (e.g. after a test shortened the read timeout)."""
        clients = aws.Clients(
            endpoint_url=self.emulator.endpoint_url,
            on_request=self.metrics.aws_request,
            max_attempts=max_attempts,
        )
        return engine.Engine(clients, self.store, self.metrics, POLICY, clock=self.clock)

    def step(self, image: str | None = None, **spec_fields: Any) -> engine.StepResult:
        return self.engine.step(loaded_spec(image or self.new, **spec_fields))

    def aws_calls(self, operation: str | None = None, result: str | None = None) -> float:
        """reconciler_aws_requests_total summed over the labels not given."""
        total = 0.0
        for family in self.metrics.registry.collect():
            for sample in family.samples:
                if sample.name != "reconciler_aws_requests_total":
                    continue
                labels = sample.labels
                if operation is not None and labels.get("operation") != operation:
                    continue
                if result is not None and labels.get("result") != result:
                    continue
                total += sample.value
        return total

    def served(self, action: str) -> int:
        """The emulator's own count of CloudFormation `action` requests, faults included."""
        return self.emulator.requests().get(("cloudformation", action), 0)

    def sample(self, metric: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(metric, labels)
        return value or 0.0

    def live(self) -> dict[str, str]:
        """What the stack runs, read past the injected faults (they are for the daemon)."""
        return self.emulator.live_parameters(STACK)


@pytest.fixture
def fault_world(tmp_path: pathlib.Path) -> Iterator[FaultWorld]:
    with Emulator(update_seconds=UPDATE_SECONDS, seed=7) as emu:
        old, new = (emu.register_image(f"biglearn-v{i}") for i in (1, 2))
        emu.ensure_bucket(BUCKET)
        emu.create_stack(STACK, stack_parameters(old))
        metrics = Metrics()
        clock = TestClock()
        with Store.in_state_dir(tmp_path / "state") as store:
            world = FaultWorld(emu, metrics, store, clock, old, new)
            # Two attempts per call: botocore's own retry is bounded and visible in counts.
            world.engine = world.new_engine(max_attempts=2)
            yield world
