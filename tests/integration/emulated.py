"""An Engine against the embedded emulator, for tests of what the daemon reads and sends
there (drift, the change-set guard): stacks made from any template, a clock the test
moves between passes of steps, the requests the emulator served counted.

The shared reads' clock is the test's (`Clock`): a pass of steps happens at one moment
and the test moves time by an interval between passes, so nothing sleeps. Each reading
of the clock moves it a little, as real reads take time, so the order of the groups
listing and the stack listing matters as it does for the daemon.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from reconciler import aws, catalog, engine, model, notify, spec
from reconciler.aws.fleet import Fleet
from reconciler.embedded import Emulator
from reconciler.metrics import Metrics
from reconciler.store import Store

REVISION = "d" * 40
INTERVAL = dt.timedelta(seconds=30)
FAR = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)


class Clock:
    """Monotonic seconds for the shared reads: a millisecond per reading, and `advance`."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now

    def advance(self, delta: dt.timedelta) -> None:
        self.now += delta.total_seconds()


@dataclasses.dataclass
class World:
    emulator: Emulator
    eng: engine.Engine
    store: Store
    metrics: Metrics
    clock: Clock
    old: str
    new: str
    told: list[model.Transition]
    specs: dict[str, catalog.LoadedSpec] = dataclasses.field(default_factory=dict)

    def add(self, name: str, image: str | None = None, **fields: Any) -> None:
        """A spec for stack `name`, on `image` (the stack's own image by default)."""
        body: dict[str, Any] = {
            "stackName": name,
            "region": "us-east-1",
            "image": image or self.old,
            "capacity": {"api": 1, "migration": 1},
            "migration": {"check": "none"},
            "rollout": {"verifyHealth": False},
            **fields,
        }
        doc = spec.StackDeployment.model_validate(
            {
                "apiVersion": "reconciler/v1",
                "kind": "StackDeployment",
                "metadata": {"name": name.lower()},
                "spec": body,
            }
        )
        self.specs[name] = catalog.LoadedSpec(doc, f"deploy-specs/{name}.yaml", REVISION, False)
        self.eng.track(self.specs[name])

    def step_all(self) -> None:
        """One pass: every spec steps once, at the same moment."""
        for loaded in self.specs.values():
            result = self.eng.step(loaded)
            assert result.error is None, result.error

    def passes(self, n: int) -> None:
        for _ in range(n):
            self.clock.advance(INTERVAL)
            self.step_all()

    def new_launch_template_version(self, stack: str) -> tuple[dict[str, Any], int]:
        """By hand, outside CloudFormation: a new version of the API group's launch template,
        and the group switched to it. The group's launch template before, and the version."""
        asg, ec2 = self.emulator.client("autoscaling"), self.emulator.client("ec2")
        name = self.group(stack)
        (group,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
            "AutoScalingGroups"
        ]
        template: dict[str, Any] = group["LaunchTemplate"]
        made: int = ec2.create_launch_template_version(
            LaunchTemplateId=template["LaunchTemplateId"], LaunchTemplateData={"ImageId": self.new}
        )["LaunchTemplateVersion"]["VersionNumber"]
        asg.update_auto_scaling_group(
            AutoScalingGroupName=name,
            LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": str(made)},
        )
        return template, made

    def group(self, stack: str, logical: str = "Asg1") -> str:
        """The group's physical name, found by CloudFormation's tags as AWS sets them."""
        asg = self.emulator.client("autoscaling")
        for group in asg.describe_auto_scaling_groups()["AutoScalingGroups"]:
            tags = {t["Key"]: t["Value"] for t in group.get("Tags", [])}
            if (
                tags.get("aws:cloudformation:stack-name") == stack
                and tags.get("aws:cloudformation:logical-id") == logical
            ):
                return str(group["AutoScalingGroupName"])
        raise AssertionError(f"no group {logical} in {stack}")

    def drift(self, stack: str) -> Any:
        status = self.eng.status(stack.lower())
        assert status is not None
        return status.to_json()["drift"]

    def drifted_metric(self, stack: str) -> float | None:
        return self.metrics.registry.get_sample_value(
            "reconciler_stack_drifted", {"name": stack.lower()}
        )

    def outbox(self, kind: str) -> list[model.OutboxEntry]:
        return [e for e in self.store.due(FAR, 1000) if e.key.endswith(f"|{kind}")]


def world_of(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """The `world` fixture (tests/integration/conftest.py)."""
    for var in ("AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    with Emulator(update_seconds=0.2, seed=3) as emu:
        old, new = emu.register_image("drift-old"), emu.register_image("drift-new")
        metrics = Metrics()
        clients = aws.Clients(endpoint_url=emu.endpoint_url, on_request=metrics.aws_request)
        told: list[model.Transition] = []
        with Store.in_state_dir(tmp_path / "state") as store:
            # A sink that is never reached: the test reads what was owed it from the outbox.
            sink = notify.Sink(name="hook", kind="json", url="http://127.0.0.1:9/")
            notifier = notify.Notifier(store, [sink], metrics)
            eng = engine.Engine(clients, store, metrics, listeners=[told.extend, notifier.listener])
            clock = Clock()
            eng.fleet = Fleet(clients, clock)
            yield World(emu, eng, store, metrics, clock, old, new, told)


def make_stacks(world: World, *names: str) -> None:
    for name in names:
        world.emulator.create_stack(
            name, {"EnvName": name.lower(), "LcImageId": world.old, "MigrationLcImageId": world.old}
        )
