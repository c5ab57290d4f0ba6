"""Shared moto fixtures for the integration tests.

Rules of this file:
- No test reaches a real AWS account: fake credentials in the environment, the host's AWS
  config files hidden, and every AWS fixture inside `moto.mock_aws`.
- Stacks are made from the template the project ships (reconciler/templates/
  biglearn-stack.json) when it is there, else from a small stand-in with the same
  parameter and resource names; every parameter is given a value at creation because
  moto cannot take UsePreviousValue for a parameter that was left at its default.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from reconciler import spec
from reconciler.aws.clients import Clients
from tests.integration.emulated import World, world_of

REGION = "us-east-1"
SHIPPED_TEMPLATE = Path(__file__).parents[2] / "reconciler" / "templates" / "biglearn-stack.json"
PARAMETERS = {
    "EnvName": "blah",
    "KeyName": "kevin_va_kp",
    "RepoUrl": "https://example.invalid/biglearn.git",
    "BranchNameOrSha": "main",
    "MigrationDesiredCapacity": "0",
    "Asg1DesiredCapacity": "1",
}


def _group(template: str, capacity: str, elb: bool) -> dict[str, Any]:
    props: dict[str, Any] = {
        "AvailabilityZones": [f"{REGION}a"],
        "LaunchTemplate": {
            "LaunchTemplateId": {"Ref": template},
            "Version": {"Fn::GetAtt": [template, "LatestVersionNumber"]},
        },
        "MinSize": "0",
        "MaxSize": "10",
        "DesiredCapacity": {"Ref": capacity},
    }
    if elb:
        props["LoadBalancerNames"] = [{"Ref": "ApiElb"}]
    return {"Type": "AWS::AutoScaling::AutoScalingGroup", "Properties": props}


def _launch_template(image: str) -> dict[str, Any]:
    data = {"ImageId": {"Ref": image}, "InstanceType": "t3.micro"}
    return {"Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateData": data}}


def stand_in_template() -> dict[str, Any]:
    """The seed's shape in miniature: an API group behind a classic ELB, a migration group."""
    params = {k: {"Type": "String"} for k in [*PARAMETERS, "LcImageId", "MigrationLcImageId"]}
    api = _group("ApiLaunchTemplate", "Asg1DesiredCapacity", elb=True)
    migration = _group("MigrationLaunchTemplate", "MigrationDesiredCapacity", elb=False)
    # moto only replaces a group on an AMI change when the group references the parameter.
    api["Metadata"] = {"ImageIdTrigger": {"Ref": "LcImageId"}}
    migration["Metadata"] = {"ImageIdTrigger": {"Ref": "MigrationLcImageId"}}
    listener = {"LoadBalancerPort": "80", "InstancePort": "80", "Protocol": "HTTP"}
    elb_props = {"AvailabilityZones": [f"{REGION}a"], "Listeners": [listener]}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": params,
        "Resources": {
            "ApiLaunchTemplate": _launch_template("LcImageId"),
            "MigrationLaunchTemplate": _launch_template("MigrationLcImageId"),
            "ApiElb": {"Type": "AWS::ElasticLoadBalancing::LoadBalancer", "Properties": elb_props},
            "Asg1": api,
            "MigrationAsg": migration,
        },
    }


def template_body() -> str:
    if SHIPPED_TEMPLATE.exists():
        return SHIPPED_TEMPLATE.read_text()
    return json.dumps(stand_in_template())


@dataclasses.dataclass(frozen=True)
class Stack:
    """A stack made in moto: its name, the AMI it runs and a second AMI to roll out."""

    name: str
    old_image: str
    new_image: str
    parameters: dict[str, str]

    def spec(self, **fields: Any) -> spec.Spec:
        data: dict[str, Any] = {"stackName": self.name, "region": REGION, "image": self.new_image}
        data.update(fields)
        return spec.Spec.model_validate(data)


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake keys, and no host config that could point boto3 at a real account."""
    for var in ("AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def aws(fake_credentials: None) -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def make_stack(aws: None) -> Callable[..., Stack]:
    """Create a stack from the template, its AMIs registered; keyword args override params."""

    def make(name: str = "Stack1", **overrides: str) -> Stack:
        ec2 = boto3.client("ec2", region_name=REGION)
        old = ec2.register_image(Name=f"{name}-old")["ImageId"]
        new = ec2.register_image(Name=f"{name}-new")["ImageId"]
        params = {**PARAMETERS, "LcImageId": old, "MigrationLcImageId": old, **overrides}
        boto3.client("cloudformation", region_name=REGION).create_stack(
            StackName=name,
            TemplateBody=template_body(),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        )
        return Stack(name=name, old_image=old, new_image=new, parameters=params)

    return make


@pytest.fixture
def stack(make_stack: Callable[..., Stack]) -> Stack:
    return make_stack()


@pytest.fixture
def requests() -> list[tuple[str, str, str]]:
    """Every AWS request the `clients` fixture made: (service, operation, result)."""
    return []


@pytest.fixture
def clients(aws: None, requests: list[tuple[str, str, str]]) -> Clients:
    return Clients(on_request=lambda *call: requests.append(call), max_attempts=2)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """An Engine against the embedded emulator (tests/integration/emulated.py)."""
    yield from world_of(tmp_path, monkeypatch)
