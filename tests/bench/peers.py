"""The same AMI change by the tools users would pick instead, on the same emulator and stacks.

(a) the seed's manual procedure scripted with the AWS CLI (manual_rollout.sh), one stack
after another; (b) sceptre launching the stack group twice (phase 1, then phase 2
parameters). Both come from the separate venv `.bench/peers` (never the project's .venv):
    python3 -m venv .bench/peers && .bench/peers/bin/pip install awscli sceptre
AWS requests are counted on the emulator's side (its WSGI layer), CPU as the rusage of the
child processes, both as ratios to the daemon's own figures for the same rollout.
"""

from __future__ import annotations

import json
import pathlib
import resource
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from reconciler.embedded import template_body
from tests.bench.world import GROUP, PROJECT, World, aws_env, parameters, stack_name

PEERS = pathlib.Path(__file__).resolve().parents[2] / ".bench" / "peers" / "bin"
SCRIPT = pathlib.Path(__file__).with_name("manual_rollout.sh")
POLL = "1"  # seconds between status polls of the scripted CLI, as the daemon's active interval


def _run(argv: Sequence[str], world: World, cwd: pathlib.Path | None = None) -> dict[str, float]:
    env = aws_env()
    env.update(AWS_ENDPOINT_URL=world.emulator.endpoint_url, PATH=f"{PEERS}:{env['PATH']}")
    before = sum(world.emulator.requests().values())
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run(argv, env=env, cwd=cwd, check=True, capture_output=True)
    wall = time.monotonic() - started
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    requests = sum(world.emulator.requests().values()) - before
    return {"wall_s": wall, "requests": requests, "cpu_s": cpu}


def _add(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: a[k] + b[k] for k in a}


def aws_cli(world: World, image: str) -> dict[str, float]:
    return _run(["bash", str(SCRIPT), image, POLL, *world.stacks()], world)


def sceptre(world: World, image: str, root: pathlib.Path) -> dict[str, float]:
    project = root / "sceptre"
    live = parameters(world.images[0])  # every parameter is given: sceptre sends them all
    phase1 = {**live, "MigrationLcImageId": image, "MigrationDesiredCapacity": "1"}
    phase2 = {**phase1, "LcImageId": image, "MigrationDesiredCapacity": "0"}
    total: dict[str, float] = {"wall_s": 0.0, "requests": 0.0, "cpu_s": 0.0}
    for params in (_current_api_image(world, phase1), phase2):
        _write_configs(project, world, params)
        total = _add(total, _run([str(PEERS / "sceptre"), "launch", "-y", GROUP], world, project))
    return total


def write_sceptre_project(project: pathlib.Path, n: int, params: dict[str, str]) -> None:
    """A sceptre project whose group `GROUP` holds the n stacks, each with `params`."""
    (project / "templates").mkdir(parents=True, exist_ok=True)
    (project / "templates" / "biglearn-stack.json").write_text(template_body())
    (project / "config" / GROUP).mkdir(parents=True, exist_ok=True)
    (project / "config" / "config.yaml").write_text(f"project_code: {PROJECT}\nregion: us-east-1\n")
    for i in range(n):
        body = {"template": {"path": "biglearn-stack.json", "type": "file"}, "parameters": params}
        (project / "config" / GROUP / f"s{i}.yaml").write_text(json.dumps(body))
    assert stack_name(0) == f"{PROJECT}-{GROUP}-s0"  # sceptre's naming: the same stacks


def _current_api_image(world: World, phase1: dict[str, str]) -> dict[str, str]:
    # Phase 1 must keep the API group where it is: read it as the runbook would (not counted).
    live = world.live_images()
    return {**phase1, "LcImageId": max(set(live), key=live.count)}


def _write_configs(project: pathlib.Path, world: World, params: dict[str, str]) -> None:
    write_sceptre_project(project, world.n, params)


def compare(world: World, daemon_row: dict[str, Any], root: pathlib.Path) -> dict[str, Any]:
    if not (PEERS / "aws").exists():
        return {"skipped": f"no peers venv at {PEERS.parent}"}
    daemon = {
        "wall_s": daemon_row["rollout_s"],
        "requests": daemon_row["rollout_req_per_stack"] * world.n,
        "cpu_s": daemon_row["rollout_cpu_s"],
    }
    results: dict[str, Any] = {"n": world.n, "daemon": daemon}
    results["aws-cli (manual, sequential)"] = aws_cli(world, world.images[5])
    try:
        results["sceptre launch x2"] = sceptre(world, world.images[6], root)
    except subprocess.CalledProcessError as exc:
        results["sceptre launch x2"] = {"error": (exc.stderr or b"").decode()[-2000:]}
    return results


def table(results: dict[str, Any]) -> str:
    if "skipped" in results:
        return f"peers skipped: {results['skipped']}"
    d = results["daemon"]
    lines = [
        f"peers at N={results['n']} (ratios to the daemon)",
        "| tool | wall s | AWS calls | CPU s | wall x | calls x | CPU x |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if name == "n" or not isinstance(r, dict):
            continue
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error'][-200:]!r} |")
            continue
        lines.append(
            f"| {name} | {r['wall_s']:.1f} | {r['requests']:.0f} | {r['cpu_s']:.2f} | "
            f"{r['wall_s'] / d['wall_s']:.1f} | {r['requests'] / max(d['requests'], 1):.1f} | "
            f"{r['cpu_s'] / max(d['cpu_s'], 0.01):.1f} |"
        )
    return "\n".join(lines)
