"""`python -m tests.bench [--quick | --full | --fleet ...]`: the figures of docs/benchmarks.md.

`--fleet` runs the fleet benchmark instead (tests/bench/fleet.py: plain moto behind a
counting proxy, the same job for the daemon, `reconciler apply` and sceptre); every other
argument goes to it, e.g. `python -m tests.bench --fleet --fleet-sizes 50,1000`.

Per N: build the world (N stacks, one spec each), start the daemon as its own process,
wait until every stack is InSync, then measure
- a steady state of several passes: AWS requests per stack per pass (the daemon's own
  reconciler_aws_requests_total), CPU of the daemon's process, step time, peak RSS;
- a rollout of all N at once (both phases): time to converge, requests per stack, CPU;
- merge-to-first-update latency of one spec, with the webhook and with polling only.
Then, on the same emulator and stacks, the same AMI change by the peers (peers.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import tempfile
import time
from typing import Any

from reconciler.embedded import Emulator
from tests.bench import peers
from tests.bench.daemon import DaemonProcess
from tests.bench.world import World, build, stack_name

UPDATE_SECONDS = 1.0  # how long each emulated stack update stays in progress


@dataclasses.dataclass(frozen=True)
class Mode:
    sizes: tuple[int, ...]
    interval: str  # the specs' idle interval
    interval_seconds: float
    passes: int  # steady-state passes measured
    poll: str  # git poll period (the "polling" latency)
    peer_size: int  # N for the peer comparison (0: none)


QUICK = Mode((10,), "2s", 2.0, 2, "3s", 0)
FULL = Mode((10, 100, 1000), "30s", 30.0, 2, "30s", 10)


def measure(
    n: int, mode: Mode, rate: str, peer_size: int, with_rollout: bool = True
) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
        Emulator(update_seconds=UPDATE_SECONDS) as emu,
    ):
        root = pathlib.Path(tmp)
        world = build(emu, n, root, mode.interval)
        row: dict[str, Any] = {"n": n, "setup_s": round(world.setup_seconds, 1)}
        d = DaemonProcess(world, root, rate, active="1s", poll=mode.poll)
        try:
            row["first_sync_s"] = round(d.wait_in_sync(n, world.images[0], 60 + n), 1)
            row.update(steady(d, n, mode))
            print(json.dumps({"partial": row}), flush=True)  # a long rollout may follow
            if with_rollout:
                row.update(rollout(d, world, world.images[1]))
            row.update(latency(d, world))
            row["peak_rss_mb"] = round(d.peak_rss_mb(), 1)
        finally:
            d.stop()
        if peer_size and n == peer_size:
            row["peers"] = peers.compare(world, row, root)
        return row


def steady(d: DaemonProcess, n: int, mode: Mode) -> dict[str, Any]:
    time.sleep(mode.interval_seconds * 1.2)  # let the first listing age out: a real pass
    before, cpu0, t0 = d.counters(), d.cpu_seconds(), time.monotonic()
    time.sleep(mode.interval_seconds * mode.passes)
    after, cpu1, wall = d.counters(), d.cpu_seconds(), time.monotonic() - t0
    passes = (after["steps"] - before["steps"]) / n
    return {
        "passes": round(passes, 2),
        "req_per_stack_pass": round((after["aws"] - before["aws"]) / max(passes, 1e-9) / n, 4),
        "cpu_pct_one_core": round(100 * (cpu1 - cpu0) / wall, 2),
        "cpu_s_per_pass": round((cpu1 - cpu0) / max(passes, 1e-9), 3),
        "step_s_per_pass": round(
            (after["step_seconds"] - before["step_seconds"]) / max(passes, 1e-9), 3
        ),
    }


def rollout(d: DaemonProcess, world: World, image: str) -> dict[str, Any]:
    before, cpu0 = d.counters(), d.cpu_seconds()
    d.hook(world.write_specs(image))
    seconds = d.wait_in_sync(world.n, image, 120 + 2 * world.n)
    after, cpu1 = d.counters(), d.cpu_seconds()
    return {
        "rollout_s": round(seconds, 2),
        "rollout_req_per_stack": round((after["aws"] - before["aws"]) / world.n, 2),
        "rollout_throttled": int(after["throttled"] - before["throttled"]),
        "rollout_cpu_s": round(cpu1 - cpu0, 2),
    }


def latency(d: DaemonProcess, world: World) -> dict[str, Any]:
    """Seconds from the commit to the first UpdateStack reaching the stack: with the
    webhook (stack 0), then with polling only (stack 1, or 0 again when N is 1)."""
    image = world.images[2]
    with_hook = _first_update(d, world, 0, image, hook=True)
    if world.n == 1:
        d.wait_in_sync(world.n, image, 60)
    other = 1 if world.n > 1 else 0
    polled = _first_update(d, world, other, world.images[3], hook=False)
    return {
        "merge_to_update_webhook_s": round(with_hook, 3),
        "merge_to_update_poll_s": round(polled, 3),
    }


def _first_update(d: DaemonProcess, world: World, i: int, image: str, hook: bool) -> float:
    cfn = world.emulator.client("cloudformation")
    head = world.write_specs(image, only=range(i, i + 1))
    started = time.monotonic()
    if hook:
        d.hook(head)
    while time.monotonic() - started < 120:
        stack = cfn.describe_stacks(StackName=stack_name(i))["Stacks"][0]
        params = {p["ParameterKey"]: p.get("ParameterValue") for p in stack["Parameters"]}
        if params.get("MigrationLcImageId") == image:
            return time.monotonic() - started
        time.sleep(0.005)
    raise TimeoutError("no update reached the stack within 120 s")


def table(rows: list[dict[str, Any]]) -> str:
    keys = [k for k in rows[0] if k != "peers"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    for r in rows:
        if "peers" in r:
            lines += ["", peers.table(r["peers"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if "--fleet" in given:
        from tests.bench import fleet  # noqa: PLC0415 - only this mode needs it

        return fleet.main([a for a in given if a != "--fleet"])
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--fleet", action="store_true", help="the fleet benchmark (fleet.py)")
    parser.add_argument("--full", action="store_true", help="N = 10, 100, 1000 and the peers")
    parser.add_argument("--sizes", help="comma-separated N, e.g. 10,100 (overrides the mode)")
    parser.add_argument("--peers", type=int, help="N at which to run the peers (0: none)")
    parser.add_argument("--rate", default="100/s", help="the daemon's --aws-rate")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument(
        "--no-rollout",
        action="store_true",
        help="skip the all-at-once rollout (at N=1000 it takes tens of minutes in the emulator)",
    )
    args = parser.parse_args(argv)
    mode = FULL if args.full else QUICK
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else mode.sizes
    peer_size = args.peers if args.peers is not None else mode.peer_size
    rows = []
    for n in sizes:
        rows.append(measure(n, mode, args.rate, peer_size, not args.no_rollout))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\nmachine: {os.cpu_count()} CPUs; emulator update_seconds={UPDATE_SECONDS}\n")
    print(table(rows))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0
