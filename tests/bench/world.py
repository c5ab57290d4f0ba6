"""The benchmark's world: N stacks in the embedded emulator and a git repo with a spec each.

Stack names follow sceptre's naming (`<project>-<group>-<stack>`), so every tool compared
updates the very same stacks.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import time

from reconciler.embedded import Emulator, template_body

REGION = "us-east-1"
PROJECT, GROUP = "bench", "dev"
SPEC = """\
apiVersion: reconciler/v1
kind: StackDeployment
metadata:
  name: s{i}
spec:
  stackName: {stack}
  region: us-east-1
  image: {image}
  capacity:
    api: 1
    migration: 1
  parameters:
    EnvName: bench
  migration:
    check: none
  rollout:
    timeout: 30m
    verifyHealth: false
  interval: {interval}
"""


def stack_name(i: int) -> str:
    return f"{PROJECT}-{GROUP}-s{i}"


def parameters(image: str) -> dict[str, str]:
    return {
        "EnvName": "bench",
        "KeyName": "bench-key",
        "RepoUrl": "https://example.invalid/biglearn.git",
        "BranchNameOrSha": "main",
        "LcImageId": image,
        "MigrationLcImageId": image,
        "MigrationDesiredCapacity": "0",
        "Asg1DesiredCapacity": "1",
    }


def aws_env() -> dict[str, str]:
    """Fake credentials and no host AWS config, for every process the benchmark starts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
    )
    return env


@dataclasses.dataclass
class World:
    emulator: Emulator
    n: int
    images: list[str]
    repo: pathlib.Path
    interval: str
    setup_seconds: float = 0.0

    def stacks(self) -> list[str]:
        return [stack_name(i) for i in range(self.n)]

    def live_images(self) -> list[str]:
        cfn = self.emulator.client("cloudformation")
        found: list[str] = []
        for page in cfn.get_paginator("describe_stacks").paginate():
            for s in page["Stacks"]:
                params = {p["ParameterKey"]: p.get("ParameterValue") for p in s["Parameters"]}
                found.append(str(params.get("LcImageId")))
        return found

    def write_specs(self, image: str, only: range | None = None) -> str:
        """Commit specs asking for `image` (all, or the `only` ones); the new head."""
        for i in only if only is not None else range(self.n):
            text = SPEC.format(i=i, stack=stack_name(i), image=image, interval=self.interval)
            (self.repo / "deploy-specs" / f"s{i}.yaml").write_text(text)
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-q", "-m", f"deploy {image}")
        return git(self.repo, "rev-parse", "HEAD")


def git(repo: pathlib.Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid"}
    env.update(GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.invalid")
    done = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env
    )
    return done.stdout.strip()


def build(emulator: Emulator, n: int, root: pathlib.Path, interval: str) -> World:
    """N stacks on a first image, six more images to roll out, a repo asking for the first."""
    started = time.monotonic()
    images = [emulator.register_image(f"bench-{k}") for k in range(7)]
    cfn = emulator.client("cloudformation")
    body = template_body()
    for i in range(n):  # create all, then wait: moto's creation is synchronous anyway
        params = parameters(images[0])
        cfn.create_stack(
            StackName=stack_name(i),
            TemplateBody=body,
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        )
    repo = root / "repo"
    (repo / "deploy-specs").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    world = World(emulator, n, images, repo, interval)
    world.write_specs(images[0])
    world.setup_seconds = time.monotonic() - started
    return world
