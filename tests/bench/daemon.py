"""The daemon under test, as its own process: counted by its own /metrics, measured in /proc."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from typing import Any

from tests.bench.world import World, aws_env

TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DaemonProcess:
    def __init__(self, world: World, root: pathlib.Path, rate: str, active: str, poll: str) -> None:
        """The daemon as the scale benchmark tunes it (harness.py)."""
        options = [
            "--poll-interval", poll,
            "--active-interval", active,
            "--aws-rate", rate,
            "--workers", "8",
            "--log-level", "warning",
        ]  # fmt: skip
        self._start(world.repo, root, world.emulator.endpoint_url, options)

    @classmethod
    def plain(
        cls,
        repo: pathlib.Path,
        root: pathlib.Path,
        endpoint_url: str,
        options: Sequence[str] = (),
    ) -> DaemonProcess:
        """The daemon as a new user starts it: only where things are, plus `options`."""
        daemon = cls.__new__(cls)
        daemon._start(repo, root, endpoint_url, list(options))
        return daemon

    def _start(
        self, repo: pathlib.Path, root: pathlib.Path, endpoint_url: str, options: list[str]
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = pathlib.Path(sys.executable).with_name("reconciler")
        argv = [
            str(exe), "run",
            "--repo", str(repo),
            "--state-dir", str(root / "state"),
            "--listen", f"127.0.0.1:{self.port}",
            "--endpoint-url", endpoint_url,
            "--log-format", "json",
            *options,
        ]  # fmt: skip
        self.log_path = root.parent / f"{root.name}-daemon.log"
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(argv, env=aws_env(), stdout=self.log, stderr=self.log)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    # --- what it reports ----------------------------------------------------------------

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return bytes(r.read())

    def stacks(self) -> list[dict[str, Any]]:
        return list(json.loads(self.get("/api/v1/stacks"))["stacks"])

    def counters(self) -> dict[str, float]:
        """Sums of the counters the benchmark reads, from the daemon's own exposition."""
        sums = {"aws": 0.0, "throttled": 0.0, "steps": 0.0, "step_seconds": 0.0}
        for line in self.get("/metrics").decode().splitlines():
            name, _, value = line.rpartition(" ")
            if name.startswith("reconciler_aws_requests_total{"):
                sums["aws"] += float(value)
                if 'result="throttled"' in name:
                    sums["throttled"] += float(value)
            elif name.startswith("reconciler_reconcile_total{"):
                sums["steps"] += float(value)
            elif name.startswith("reconciler_reconcile_duration_seconds_sum{"):
                sums["step_seconds"] += float(value)
        return sums

    def cpu_seconds(self) -> float:
        fields = pathlib.Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime

    def peak_rss_mb(self) -> float:
        for line in pathlib.Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def hook(self, head: str) -> None:
        body = json.dumps({"ref": "refs/heads/main", "after": head}).encode()
        request = urllib.request.Request(
            self.url + "/hooks/git",
            data=body,
            method="POST",
            headers={"X-GitHub-Event": "push", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10):
            pass

    def wait_in_sync(self, n: int, image: str, timeout: float) -> float:
        """Seconds until all n stacks are InSync on `image` (as the daemon reports them)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                stacks = self.stacks()
            except OSError:
                stacks = []
            done = [
                s
                for s in stacks
                if s["phase"] == "InSync" and s["live"]["parameters"].get("LcImageId") == image
            ]
            if len(done) == n:
                return time.monotonic() - started
            if self.proc.poll() is not None:
                raise RuntimeError("the daemon exited; see daemon.log")
            time.sleep(0.2)
        raise TimeoutError(f"{n} stacks not InSync on {image} within {timeout}s")
