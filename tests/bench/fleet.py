"""`python -m tests.bench.fleet` (or `python -m tests.bench --fleet`): one rollout job, every tool.

The job, as a new user would try it: N stacks of the shipped template on a PLAIN moto server
(its own process, no emulator layer: updates complete at once), a counting proxy in front of
it (its own process too, tests/bench/proxy.py) that every tool uses as its AWS endpoint, and
a record worker in the proxy that writes each migration record as soon as phase 1 reaches
its stack (its put counted, once per stack, for every tool). Specs: migration check s3 (the
record gate on), rollout verifyHealth true, capacity api 1 migration 1, default interval.

Each run gets a fresh world and is measured from the merge (the commit bumping every spec's
image, then the push webhook) until every stack's live LcImageId is the new image with
MigrationDesiredCapacity 0 and, for the daemon, it reports every spec InSync:
  defaults   `reconciler run`, shipped defaults, started and InSync before the merge; with
             the steady state before it (requests per stack per pass) and merge-to-first-update
  rate       the same with `--aws-rate 1000/s`
  apply      `reconciler apply --wait`, shipped defaults, started at the merge
  sceptre    sceptre `launch -y` of the stack group, phase 1 then phase 2
  throttled  as defaults, with every 3rd request of the daemon throttled by the proxy
Requests are the proxy's counts; CPU from /proc (running processes) or wait4 (one-shot ones);
the emulator's CPU from moto's own process.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import pathlib
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from typing import IO, Any

import boto3
from botocore.config import Config

from reconciler import spec as spec_model
from reconciler.embedded import template_body
from tests.bench.daemon import TICKS, DaemonProcess
from tests.bench.peers import PEERS, write_sceptre_project
from tests.bench.world import GROUP, REGION, aws_env, git, parameters, stack_name

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]
BUCKET, PREFIX = "deploy-status", "bench"
SPEC = """\
apiVersion: reconciler/v1
kind: StackDeployment
metadata:
  name: s{i}
  labels: {{app: bench}}
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
    check: s3
    location: s3://{bucket}/{prefix}
    timeout: 30m
  rollout:
    timeout: 30m
    verifyHealth: true
{alarms}"""
ALARM = "bench-5xx"
FLEET = """\
apiVersion: reconciler/v1
kind: Fleet
metadata:
  name: bench
spec:
  selector: {matchLabels: {app: bench}}
  steps:
    - maxConcurrent: 100%
"""
RUNS = ("defaults", "rate", "apply", "sceptre", "throttled", "alarms", "fleet", "known")
LABELS = {
    "sceptre": "sceptre 4.7 `launch` of the stack group, both phases",
    "defaults": "`reconciler run`, shipped defaults",
    "rate": "`reconciler run --aws-rate 1000/s`",
    "apply": "`reconciler apply --wait`, shipped defaults",
    "throttled": "`reconciler run`, shipped defaults, every 3rd request throttled",
    "alarms": "`reconciler run`, every spec with `rollout.alarms: [one alarm]`",
    "fleet": "`reconciler run`, every spec in one fleet (one step, maxConcurrent 100%)",
    "known": "`reconciler run`, shipped defaults, the next bump (change-set verdicts known)",
}
THROTTLE_EVERY = 3
CHANGE_SET = "cloudformation:CreateChangeSet"


# --- processes ------------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def proc_peak_rss_mb(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Helper:
    """A helper process of the benchmark (moto, the proxy) that prints `PORT n` when ready
    and exits when its standard input closes."""

    def __init__(self, module: str, args: Sequence[str], log: pathlib.Path) -> None:
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=PROJECT_ROOT,
            env=aws_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"{module} did not start: {line!r}; see {log}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        out: IO[str] = self.proc.stdout
        threading.Thread(target=lambda: [None for _ in out], daemon=True).start()

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def run_measured(
    argv: Sequence[str], env: dict[str, str], log: pathlib.Path, cwd: pathlib.Path | None = None
) -> dict[str, Any]:
    """Run one child to its end; its own CPU and peak RSS from wait4 (no other child mixes in)."""
    with log.open("a") as out:
        started = time.monotonic()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=out)
        # wait4's ru_maxrss keeps the forking parent's peak across exec: sample VmHWM instead.
        peak = [0.0]
        exited = threading.Event()

        def sample() -> None:
            while not exited.wait(0.1):
                try:
                    peak[0] = max(peak[0], proc_peak_rss_mb(proc.pid))
                except (OSError, ValueError):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        exited.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        return {
            "started": started,
            "wall_s": time.monotonic() - started,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": peak[0],
            "rc": proc.returncode,
        }


# --- the world ------------------------------------------------------------------------


def moto_client(url: str, service: str) -> Any:
    config = Config(
        retries={"mode": "standard", "total_max_attempts": 5},
        max_pool_connections=16,
        s3={"addressing_style": "path"},
        read_timeout=120,
    )
    factory: Any = boto3.client
    return factory(
        service,
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    )


@dataclasses.dataclass
class World:
    n: int
    root: pathlib.Path
    moto: Helper
    proxy: Helper
    images: list[str]
    repo: pathlib.Path
    setup_s: float = 0.0
    alarms: bool = False  # every spec names one CloudWatch alarm (rollout.alarms)

    def stacks(self) -> list[str]:
        return [stack_name(i) for i in range(self.n)]

    def write_specs(self, image: str) -> str:
        for i in range(self.n):
            alarms = f"    alarms: [{ALARM}]\n" if self.alarms else ""
            text = SPEC.format(
                i=i, stack=stack_name(i), image=image, bucket=BUCKET, prefix=PREFIX, alarms=alarms
            )
            (self.repo / "deploy-specs" / f"s{i}.yaml").write_text(text)
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-q", "-m", f"deploy {image}")
        return git(self.repo, "rev-parse", "HEAD")

    # --- the proxy's side -------------------------------------------------------------

    def control(self, name: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.proxy.url}/__bench/{name}", data=data, method="POST" if data else "GET"
        )
        with urllib.request.urlopen(request, timeout=60) as r:
            return json.loads(r.read())

    def stats(self) -> dict[str, Any]:
        return dict(self.control("stats"))

    def throttle(self, every: int) -> None:
        request = urllib.request.Request(
            f"{self.proxy.url}/__bench/throttle?every={every}", data=b"", method="POST"
        )
        with urllib.request.urlopen(request, timeout=10):
            pass

    # --- ground truth, straight from moto (not counted) ------------------------------

    def live(self) -> dict[str, dict[str, str]]:
        cfn = moto_client(self.moto.url, "cloudformation")
        found: dict[str, dict[str, str]] = {}
        for page in cfn.get_paginator("describe_stacks").paginate():
            for s in page["Stacks"]:
                params = {p["ParameterKey"]: p.get("ParameterValue", "") for p in s["Parameters"]}
                found[s["StackName"]] = params
        return found

    def converged_live(self, image: str) -> int:
        live = self.live()
        return sum(1 for s in self.stacks() if _done(live.get(s, {}), image))

    def records(self) -> int:
        s3 = moto_client(self.moto.url, "s3")
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX + "/")
        return sum(len(page.get("Contents", [])) for page in pages)

    def health_probe(self) -> dict[str, Any]:
        """Does plain moto register the API group's instances with the classic ELB, InService?"""
        cfn = moto_client(self.moto.url, "cloudformation")
        asg = moto_client(self.moto.url, "autoscaling")
        elb = moto_client(self.moto.url, "elb")
        resources = cfn.describe_stack_resources(StackName=stack_name(0))["StackResources"]
        group = next(r["PhysicalResourceId"] for r in resources if r["LogicalResourceId"] == "Asg1")
        found = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])
        g = found["AutoScalingGroups"][0]
        ids = {i["InstanceId"] for i in g["Instances"]}
        states = {}
        for name in g.get("LoadBalancerNames", []):
            for s in elb.describe_instance_health(LoadBalancerName=name)["InstanceStates"]:
                states[s["InstanceId"]] = s["State"]
        return {
            "group": group,
            "load_balancers": g.get("LoadBalancerNames", []),
            "instances": sorted(ids),
            "in_service": all(states.get(i) == "InService" for i in ids) and bool(ids),
            "states": states,
        }

    def close(self) -> None:
        self.proxy.stop()
        self.moto.stop()


def _done(params: dict[str, str], image: str) -> bool:
    return params.get("LcImageId") == image and params.get("MigrationDesiredCapacity") == "0"


def build(n: int, root: pathlib.Path, alarms: bool = False, fleet: bool = False) -> World:
    """A fresh moto, the proxy, N stacks on the first image, a repo asking for it (with
    `alarms`, each spec names one alarm; with `fleet`, one fleet orders them all)."""
    started = time.monotonic()
    root.mkdir(parents=True, exist_ok=True)
    moto = Helper("tests.bench.moto_proc", [], root / "moto.log")
    proxy = Helper(
        "tests.bench.proxy",
        ["--upstream", moto.url, "--bucket", BUCKET, "--prefix", PREFIX],
        root / "proxy.log",
    )
    try:
        ec2 = moto_client(moto.url, "ec2")
        images = [
            str(ec2.register_image(Name=f"bench-{k}", RootDeviceName="/dev/sda1")["ImageId"])
            for k in range(3)  # the `known` run bumps twice
        ]
        moto_client(moto.url, "s3").create_bucket(Bucket=BUCKET)
        if alarms:
            moto_client(moto.url, "cloudwatch").put_metric_alarm(
                AlarmName=ALARM,
                MetricName="HTTPCode_Backend_5XX",
                Namespace="AWS/ELB",
                Statistic="Sum",
                Period=60,
                EvaluationPeriods=1,
                Threshold=10.0,
                ComparisonOperator="GreaterThanThreshold",
            )
        cfn = moto_client(moto.url, "cloudformation")
        body = template_body()
        first = parameters(images[0])

        def create(i: int) -> None:
            cfn.create_stack(
                StackName=stack_name(i),
                TemplateBody=body,
                Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in first.items()],
            )

        for i in range(n):  # one at a time: moto's create_stack is not thread-safe
            create(i)
        repo = root / "repo"
        (repo / "deploy-specs").mkdir(parents=True)
        git(repo, "init", "-q", "-b", "main")
        world = World(n, root, moto, proxy, images, repo, alarms=alarms)
        if fleet:
            (repo / "deploy-specs" / "fleet.yaml").write_text(FLEET)
        world.write_specs(images[0])
        world.control("live", dict.fromkeys(world.stacks(), first))
    except BaseException:
        proxy.stop()
        moto.stop()
        raise
    world.setup_s = time.monotonic() - started
    return world


# --- counting -------------------------------------------------------------------------


def _by_client(stats: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for _service, _op, client, count in stats["requests"]:
        out[client] = out.get(client, 0) + int(count)
    return out


def _ops(before: dict[str, Any], after: dict[str, Any], client: str) -> dict[str, int]:
    def table(stats: dict[str, Any]) -> dict[str, int]:
        return {f"{s}:{o}": int(n) for s, o, c, n in stats["requests"] if c == client}

    a, b = table(before), table(after)
    return {k: a2 for k in sorted(b) if (a2 := b[k] - a.get(k, 0))}


def _errors(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    def table(stats: dict[str, Any]) -> dict[str, int]:
        return {f"{s}:{o}:{c}:{code}": int(n) for s, o, c, code, n in stats["errors"]}

    a, b = table(before), table(after)
    return {k: d for k in sorted(b) if (d := b[k] - a.get(k, 0))}


def _upstream(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """Seconds moto took to answer, per operation (all clients), busiest first."""
    a = {f"{s}:{o}": float(t) for s, o, t in before.get("upstream_s", [])}
    b = {f"{s}:{o}": float(t) for s, o, t in after.get("upstream_s", [])}
    spent = {k: round(t - a.get(k, 0.0), 2) for k, t in b.items()}
    return dict(sorted(((k, t) for k, t in spent.items() if t), key=lambda kv: -kv[1]))


def requests_between(before: dict[str, Any], after: dict[str, Any], n: int) -> dict[str, Any]:
    b0, b1 = _by_client(before), _by_client(after)
    tool = b1.get("tool", 0) - b0.get("tool", 0)
    worker = b1.get("worker", 0) - b0.get("worker", 0)
    return {
        "requests": tool + worker,
        "requests_tool": tool,
        "requests_worker": worker,
        "req_per_stack": round((tool + worker) / n, 2),
        "req_per_stack_tool": round(tool / n, 2),
        "ops_tool": _ops(before, after, "tool"),
        "errors": _errors(before, after),
        "moto_answer_s": _upstream(before, after),
    }


def first_update_after(stats: dict[str, Any], t: float) -> float | None:
    times = [u for u in stats["update_times"] if u >= t]
    return min(times) - t if times else None


def wait_converged(
    world: World,
    image: str,
    deadline: float,
    alive: Callable[[], bool] = lambda: True,
) -> float:
    """Until every stack runs `image` with no migration instance: the proxy's view (no load
    on moto), checked against moto itself every 10 s in case a tool updates another way."""
    checked = time.monotonic()
    period = 0.1 if world.n <= 100 else 0.25
    while time.monotonic() < deadline:
        if world.control(f"converged?image={image}")["converged"] == world.n:
            return time.monotonic()
        if time.monotonic() - checked > 10:
            checked = time.monotonic()
            if world.converged_live(image) == world.n:
                return checked
        if not alive():
            raise RuntimeError("the tool exited before the fleet converged")
        time.sleep(period)
    raise TimeoutError(f"{world.n} stacks not on {image} in time")


# --- the daemon runs ------------------------------------------------------------------


def daemon_report(d: DaemonProcess) -> tuple[list[dict[str, Any]], dict[str, float]]:
    stacks = d.stacks()
    failed = 0.0
    for line in d.get("/metrics").decode().splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith("reconciler_rollouts_total{") and 'result="failed"' in name:
            failed += float(value)
    return stacks, {"rollouts_failed": failed}


def wait_in_sync(d: DaemonProcess, n: int, image: str, deadline: float, period: float) -> float:
    while time.monotonic() < deadline:
        try:
            stacks = d.stacks()
        except OSError:
            stacks = []
        done = sum(
            1
            for s in stacks
            if s["phase"] == "InSync" and s["live"]["parameters"].get("LcImageId") == image
        )
        if done == n:
            return time.monotonic()
        if d.proc.poll() is not None:
            raise RuntimeError(f"the daemon exited; see {d.log_path}")
        time.sleep(period)
    raise TimeoutError(f"{n} specs not InSync on {image} in time")


def shipped_interval() -> float:
    default = spec_model.Spec.model_fields["interval"].default
    return float(default.total_seconds()) if isinstance(default, dt.timedelta) else 30.0


def steady(d: DaemonProcess, world: World, intervals: int) -> dict[str, Any]:
    """Requests per stack per pass over `intervals` intervals, after a first one has aged out."""
    interval = shipped_interval()
    time.sleep(interval * 1.2)
    s0, c0, m0, t0 = world.stats(), d.counters(), proc_cpu_seconds(d.proc.pid), time.monotonic()
    time.sleep(interval * intervals)
    s1, c1, m1 = world.stats(), d.counters(), proc_cpu_seconds(d.proc.pid)
    wall = time.monotonic() - t0
    passes = (c1["steps"] - c0["steps"]) / world.n
    tool = _by_client(s1).get("tool", 0) - _by_client(s0).get("tool", 0)
    return {
        "interval_s": interval,
        "window_s": round(wall, 1),
        "passes": round(passes, 2),
        "requests": tool,
        "req_per_stack_pass": round(tool / passes / world.n, 4) if passes else None,
        "cpu_pct_one_core": round(100 * (m1 - m0) / wall, 2),
        "ops": _ops(s0, s1, "tool"),
    }


def run_daemon(
    world: World,
    label: str,
    options: Sequence[str],
    steady_intervals: int,
    throttle_every: int,
    timeout: float,
) -> dict[str, Any]:
    n, old, new = world.n, world.images[0], world.images[1]
    period = 0.25 if n <= 100 else 1.0  # polling the daemon's status costs it CPU at large N
    if label == "known":
        # A first bump teaches the change-set guard its verdicts; the second is measured.
        old, new = world.images[1], world.images[2]
    d = DaemonProcess.plain(world.repo, world.root / label, world.proxy.url, options)
    row: dict[str, Any] = {"tool": label, "n": n, "setup_s": round(world.setup_s, 1)}
    try:
        started = time.monotonic()
        if label == "known":
            wait_in_sync(d, n, world.images[0], started + timeout, period)
            d.hook(world.write_specs(old))
        row["first_sync_s"] = round(wait_in_sync(d, n, old, started + timeout, period) - started, 1)
        if steady_intervals:
            row["steady"] = steady(d, world, steady_intervals)
            print(json.dumps({"partial": row}), flush=True)  # a long rollout may follow
        else:
            time.sleep(3)  # a quiet moment on the first image before the merge
        before, c0 = world.stats(), d.counters()
        cpu0, emu0, px0 = d.cpu_seconds(), world.moto.cpu_seconds(), world.proxy.cpu_seconds()
        if throttle_every:
            world.throttle(throttle_every)
        t0 = time.monotonic()
        head = world.write_specs(new)
        hooked = time.monotonic()
        d.hook(head)
        deadline = t0 + timeout
        stacks_done = wait_converged(world, new, deadline, lambda: d.proc.poll() is None)
        t1 = wait_in_sync(d, n, new, deadline, period)
        after, c1 = world.stats(), d.counters()
        cpu1, emu1, px1 = d.cpu_seconds(), world.moto.cpu_seconds(), world.proxy.cpu_seconds()
        if throttle_every:
            world.throttle(0)
        first = first_update_after(after, hooked)
        row.update(
            wall_s=round(t1 - t0, 2),
            stacks_converged_s=round(stacks_done - t0, 2),
            cpu_s=round(cpu1 - cpu0, 2),
            emulator_cpu_s=round(emu1 - emu0, 2),
            proxy_cpu_s=round(px1 - px0, 2),
            peak_rss_mb=round(d.peak_rss_mb(), 1),
            merge_to_first_update_s=None if first is None else round(first, 3),
            daemon_counted_requests=int(c1["aws"] - c0["aws"]),
            daemon_counted_throttled=int(c1["throttled"] - c0["throttled"]),
            **requests_between(before, after, n),
        )
        stacks, counts = daemon_report(d)
        row["failures_recorded"] = sum(int(s["failures"]["count"]) for s in stacks)
        row["rollouts_failed"] = counts["rollouts_failed"]
    finally:
        d.stop()
    row.update(verify(world, new))
    return row


def verify(world: World, image: str) -> dict[str, Any]:
    """Ground truth after the run, straight from moto."""
    return {"converged_in_moto": world.converged_live(image), "records": world.records()}


# --- the one-shot tools ---------------------------------------------------------------


def run_apply(world: World, timeout: float) -> dict[str, Any]:
    n, new = world.n, world.images[1]
    exe = pathlib.Path(sys.executable).with_name("reconciler")
    root = world.root / "apply"
    root.mkdir()
    before = world.stats()
    emu0, px0 = world.moto.cpu_seconds(), world.proxy.cpu_seconds()
    t0 = time.monotonic()
    world.write_specs(new)
    argv = [
        str(exe), "apply", "--wait",
        "--repo", str(world.repo),
        "--state-dir", str(root / "state"),
        "--endpoint-url", world.proxy.url,
    ]  # fmt: skip
    del timeout  # apply's own --timeout (shipped default) bounds it
    done = run_measured(argv, aws_env(), world.root / "apply.log")
    t1 = time.monotonic()
    after = world.stats()
    emu1, px1 = world.moto.cpu_seconds(), world.proxy.cpu_seconds()
    first = first_update_after(after, done["started"])
    row: dict[str, Any] = {
        "tool": "apply",
        "n": n,
        "setup_s": round(world.setup_s, 1),
        "rc": done["rc"],
        "wall_s": round(t1 - t0, 2),
        "cpu_s": round(done["cpu_s"], 2),
        "peak_rss_mb": round(done["peak_rss_mb"], 1),
        "emulator_cpu_s": round(emu1 - emu0, 2),
        "proxy_cpu_s": round(px1 - px0, 2),
        "merge_to_first_update_s": None if first is None else round(first, 3),
        **requests_between(before, after, n),
    }
    row.update(verify(world, new))
    return row


def run_sceptre(world: World) -> dict[str, Any]:
    n, old, new = world.n, world.images[0], world.images[1]
    sceptre = PEERS / "sceptre"
    if not sceptre.exists():
        return {"tool": "sceptre", "n": n, "skipped": f"no {sceptre}"}
    project = world.root / "sceptre"
    env = aws_env()
    env.update(AWS_ENDPOINT_URL=world.proxy.url, PATH=f"{PEERS}:{env['PATH']}")
    # Phase 1 keeps the API group where it is: the live API image, as the runbook reads it.
    live = world.live()
    api_images = [p["LcImageId"] for p in live.values()]
    api_now = max(set(api_images), key=api_images.count)
    assert api_now == old
    phase1 = {**parameters(old), "MigrationLcImageId": new, "MigrationDesiredCapacity": "1"}
    phase2 = {**phase1, "LcImageId": new, "MigrationDesiredCapacity": "0"}
    before = world.stats()
    emu0, px0 = world.moto.cpu_seconds(), world.proxy.cpu_seconds()
    cpu, rss, rcs = 0.0, 0.0, []
    t0 = time.monotonic()
    first_start = None
    for params in (phase1, phase2):
        write_sceptre_project(project, n, params)
        done = run_measured(
            [str(sceptre), "launch", "-y", GROUP], env, world.root / "sceptre.log", project
        )
        first_start = first_start or done["started"]
        cpu += done["cpu_s"]
        rss = max(rss, done["peak_rss_mb"])
        rcs.append(done["rc"])
    t1 = time.monotonic()
    after = world.stats()
    emu1, px1 = world.moto.cpu_seconds(), world.proxy.cpu_seconds()
    first = first_update_after(after, first_start or t0)
    row: dict[str, Any] = {
        "tool": "sceptre",
        "n": n,
        "setup_s": round(world.setup_s, 1),
        "rc": rcs,
        "wall_s": round(t1 - t0, 2),
        "cpu_s": round(cpu, 2),
        "peak_rss_mb": round(rss, 1),
        "emulator_cpu_s": round(emu1 - emu0, 2),
        "proxy_cpu_s": round(px1 - px0, 2),
        "merge_to_first_update_s": None if first is None else round(first, 3),
        **requests_between(before, after, n),
    }
    row.update(verify(world, new))
    return row


# --- one N ----------------------------------------------------------------------------


def measure(
    n: int,
    runs: Sequence[str],
    work: pathlib.Path,
    steady_intervals: int,
    timeout: float,
) -> dict[str, Any]:
    result: dict[str, Any] = {"n": n, "runs": {}}
    for run in runs:
        world: World | None = None
        try:
            world = build(n, work / f"n{n}-{run}", alarms=run == "alarms", fleet=run == "fleet")
            if "health_probe" not in result:
                result["health_probe"] = world.health_probe()
            if run == "defaults":
                row = run_daemon(world, run, (), steady_intervals, 0, timeout)
            elif run == "rate":
                row = run_daemon(world, run, ("--aws-rate", "1000/s"), 0, 0, timeout)
            elif run == "throttled":
                row = run_daemon(world, run, (), 0, THROTTLE_EVERY, timeout)
            elif run in ("alarms", "fleet", "known"):
                row = run_daemon(world, run, (), 0, 0, timeout)
            elif run == "apply":
                row = run_apply(world, timeout)
            elif run == "sceptre":
                row = run_sceptre(world)
            else:
                raise ValueError(f"unknown run {run!r}")
        except Exception as exc:  # one tool failing must not hide the others' figures
            row = {"tool": run, "n": n, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            if world is not None:
                world.close()
        row["code"] = code_revision()  # the tree may move between runs: say which one ran
        if row.get("wall_s"):
            share = {
                "tool_cpu_share_of_wall": round(row["cpu_s"] / row["wall_s"], 3),
                "emulator_cpu_share_of_wall": round(row["emulator_cpu_s"] / row["wall_s"], 3),
            }
            row.update(share)
        result["runs"][run] = row
        print(json.dumps({"run": row}), flush=True)
    result["checks"] = checks(result)
    return result


def checks(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's must-hold lines, PASS/FAIL (None: not measured in this run)."""
    runs: dict[str, dict[str, Any]] = result["runs"]
    a, sc, th = runs.get("defaults", {}), runs.get("sceptre", {}), runs.get("throttled", {})
    out: list[dict[str, Any]] = []

    def add(name: str, ok: bool | None, figure: str) -> None:
        out.append({"check": name, "ok": ok, "figure": figure})

    ok_a = "wall_s" in a
    add(
        "rollout <= 6 AWS requests per stack (record put and health included)",
        a["req_per_stack"] <= 6 if ok_a else None,
        f"{a.get('req_per_stack')} per stack",
    )
    add(
        "the daemon's own calls <= 5 per stack",
        a["req_per_stack_tool"] <= 5 if ok_a else None,
        f"{a.get('req_per_stack_tool')} per stack",
    )
    has_sc = ok_a and "wall_s" in sc
    add(
        "merge to every stack converged <= 0.5x sceptre's wall",
        a["wall_s"] <= 0.5 * sc["wall_s"] if has_sc else None,
        f"{a.get('wall_s')} s vs sceptre {sc.get('wall_s')} s",
    )
    add(
        "daemon CPU <= sceptre's",
        a["cpu_s"] <= sc["cpu_s"] if has_sc else None,
        f"{a.get('cpu_s')} s vs sceptre {sc.get('cpu_s')} s",
    )
    st = a.get("steady", {}).get("req_per_stack_pass")
    add(
        "steady state <= 0.05 requests per stack per pass (N >= 50)",
        (st <= 0.05 if st is not None else None) if result["n"] >= 50 else None,
        f"{st} at N={result['n']}",
    )
    m2u = a.get("merge_to_first_update_s")
    add("merge to first update <= 1 s", m2u <= 1.0 if m2u is not None else None, f"{m2u} s")
    al, fl = runs.get("alarms", {}), runs.get("fleet", {})
    add(
        "alarms add at most one request per stack",
        al["req_per_stack"] <= a["req_per_stack"] + 1 if ok_a and "wall_s" in al else None,
        f"{al.get('req_per_stack')} vs {a.get('req_per_stack')} per stack",
    )
    add(
        "in a fleet (one step, 100%): rollout <= 6 requests per stack",
        fl["req_per_stack"] <= 6 if "wall_s" in fl else None,
        f"{fl.get('req_per_stack')} per stack",
    )
    kn = runs.get("known", {})
    ok_kn = "wall_s" in kn
    add(
        "guard, verdicts known: rollout <= 6 requests per stack",
        kn["req_per_stack"] <= 6 if ok_kn else None,
        f"{kn.get('req_per_stack')} per stack ({kn.get('ops_tool', {}).get(CHANGE_SET, 0)} "
        "change sets)",
    )
    kn_first = kn.get("merge_to_first_update_s")
    add(
        "guard, verdicts known: merge to first update <= 1 s",
        kn_first <= 1.0 if kn_first is not None else None,
        f"{kn_first} s",
    )
    if "wall_s" in th and ok_a:
        ratio = th["requests"] / max(a["requests"], 1)
        ok = (
            th["converged_in_moto"] == result["n"]
            and th["failures_recorded"] == 0
            and th["rollouts_failed"] == 0
            and ratio <= 2.0
        )
        figure = (
            f"converged {th['converged_in_moto']}/{result['n']}, failures "
            f"{th['failures_recorded']}, failed rollouts {th['rollouts_failed']:.0f}, "
            f"calls x{ratio:.2f} of unthrottled"
        )
        add("a third of calls throttled: converges, no failure, <= 2x the calls", ok, figure)
    else:
        add(
            "a third of calls throttled: converges, no failure, <= 2x the calls",
            False if "error" in th else None,
            str(th.get("error", "not run")),
        )
    return out


# --- output ---------------------------------------------------------------------------


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(result: dict[str, Any]) -> str:
    n, runs = result["n"], result["runs"]
    sc_wall = runs.get("sceptre", {}).get("wall_s")
    lines = [
        f"| tool, N = {n} | wall s | CPU s | emulator CPU s | AWS requests per stack "
        "(tool's own) | wall / sceptre | merge to first update s |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in ("sceptre", "defaults", "rate", "apply", "throttled"):
        r = runs.get(run)
        if r is None:
            continue
        if "wall_s" not in r:
            lines.append(f"| {LABELS[run]} | {r.get('error') or r.get('skipped')} ||||||")
            continue
        ratio = f"{r['wall_s'] / sc_wall:.2f}x" if sc_wall else "-"
        lines.append(
            f"| {LABELS[run]} | {_f(r['wall_s'])} | {_f(r['cpu_s'])} | "
            f"{_f(r['emulator_cpu_s'])} | {_f(r['req_per_stack'])} "
            f"({_f(r['req_per_stack_tool'])}) | {ratio} | {_f(r['merge_to_first_update_s'], 2)} |"
        )
    a = runs.get("defaults", {})
    if "steady" in a:
        s = a["steady"]
        lines += [
            "",
            f"steady state (shipped defaults, interval {s['interval_s']:.0f} s): "
            f"{_f(s['req_per_stack_pass'], 4)} requests per stack per pass "
            f"({s['passes']} passes in {s['window_s']} s), daemon CPU "
            f"{s['cpu_pct_one_core']}% of one core",
        ]
    if "wall_s" in a:
        lines.append(
            f"daemon (shipped defaults): peak RSS {a['peak_rss_mb']} MB; CPU share of the wall: "
            f"daemon {100 * a['tool_cpu_share_of_wall']:.0f}%, emulator (moto) "
            f"{100 * a['emulator_cpu_share_of_wall']:.0f}%, proxy "
            f"{100 * a['proxy_cpu_s'] / a['wall_s']:.0f}%"
        )
    if result.get("checks"):
        lines += ["", "| must hold | result | measured |", "|---|---|---|"]
        for c in result["checks"]:
            verdict = {True: "PASS", False: "FAIL", None: "not measured"}[c["ok"]]
            lines.append(f"| {c['check']} | {verdict} | {c['figure']} |")
    return "\n".join(lines)


def _git_out(*args: str) -> str:
    done = subprocess.run(
        ["git", *args], check=False, capture_output=True, text=True, cwd=PROJECT_ROOT
    )
    return done.stdout.strip()


def code_revision() -> str:
    """HEAD, with `+dirty` when reconciler/ has uncommitted changes."""
    dirty = bool(_git_out("status", "--porcelain", "--", "reconciler"))
    return _git_out("rev-parse", "--short", "HEAD") + ("+dirty" if dirty else "")


def versions() -> dict[str, Any]:
    """What was measured: the code's revision (and whether reconciler/ had local changes)."""
    from importlib.metadata import version  # noqa: PLC0415

    sceptre = PEERS / "sceptre"
    peer = None
    if sceptre.exists():
        argv = [str(sceptre), "--version"]
        peer = subprocess.run(argv, check=False, capture_output=True, text=True).stdout.strip()
    return {
        "revision": _git_out("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git_out("status", "--porcelain", "--", "reconciler")),
        "python": sys.version.split()[0],
        "moto": version("moto"),
        "boto3": version("boto3"),
        "sceptre": peer,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.fleet", description=__doc__)
    parser.add_argument("--fleet-sizes", default="50", help="comma-separated N (default 50)")
    parser.add_argument(
        "--compare-at",
        type=int,
        help="N at which every run is made (default: the first size); at other sizes only "
        "the daemon with shipped defaults. 0: only that one everywhere",
    )
    parser.add_argument(
        "--runs", default=",".join(RUNS), help=f"runs at the compared N (default {','.join(RUNS)})"
    )
    parser.add_argument(
        "--steady-intervals",
        type=int,
        default=2,
        help="steady-state window in spec intervals, after one more (0: skip)",
    )
    parser.add_argument(
        "--timeout-per-stack",
        type=float,
        default=10.0,
        help="seconds per stack for each wait (plain moto's updates slow down as N grows)",
    )
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--work-dir", help="keep the worlds, logs and state here")
    args = parser.parse_args(argv)
    # SIGTERM as Ctrl-C: the finally blocks stop the daemon, moto and the proxy.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = [int(s) for s in args.fleet_sizes.split(",") if s]
    compare_at = sizes[0] if args.compare_at is None else args.compare_at
    runs = [r for r in args.runs.split(",") if r]
    unknown = set(runs) - set(RUNS)
    if unknown:
        parser.error(f"unknown runs: {', '.join(sorted(unknown))}")
    work = pathlib.Path(args.work_dir or tempfile.mkdtemp(prefix="bench-fleet-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for n in sizes:
        todo = runs if n == compare_at else ["defaults"]
        timeout = 120 + args.timeout_per_stack * n
        results.append(measure(n, todo, work, args.steady_intervals, timeout))
        print("\n" + table(results[-1]) + "\n", flush=True)  # now: the next N may take long
    usage = resource.getrusage(resource.RUSAGE_SELF)
    meta = {
        **versions(),
        "machine_cpus": os.cpu_count(),
        "harness_cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "work_dir": str(work),
    }
    print(
        f"\nmachine: {os.cpu_count()} CPUs; plain moto {meta['moto']} behind a counting proxy; "
        f"reconciler at {meta['revision']}" + (" (uncommitted changes)" if meta["dirty"] else "")
    )
    print(f"harness CPU {meta['harness_cpu_s']} s; worlds and logs in {work}\n")
    for r in results:
        print(table(r) + "\n")
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    failed_runs = [r for res in results for r in res["runs"].values() if "error" in r]
    if failed_runs and not args.work_dir:
        print(f"logs of the failed runs kept in {work}")
    elif not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed_runs else 0


if __name__ == "__main__":
    sys.exit(main())
