"""The migration instance, played: watches the migration group and writes its record.

Rules of this file:
- It sees only what a real migration instance would: AWS APIs through the emulator's
  endpoint (boto3), never moto's objects. The group's physical name changes on every
  update, so it is looked up through the stack's resources on each poll.
- One run per (image, instance): a new migration instance for the same image runs the
  migrations again, which is how a retried rollout re-runs them.
- The record is CONTRACT section 3, times RFC 3339 UTC with `Z` and milliseconds (whole
  seconds would date a record written just after phase 1 started before it).
- AWS errors (including injected throttling) skip a poll; they never end the worker.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Any

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from reconciler.embedded.emulator import Emulator, wait_for

log = structlog.get_logger("reconciler.embedded.migration")


@dataclasses.dataclass(frozen=True)
class Run:
    """One migration run as the worker finished (or abandoned) it."""

    image: str
    instance_id: str
    status: str  # succeeded, failed, or running when the instance went away mid-run


@dataclasses.dataclass(frozen=True)
class Location:
    """Where records go: an S3 bucket and key prefix, or an SSM path."""

    store: str  # "s3" or "ssm"
    bucket: str | None
    prefix: str

    @classmethod
    def parse(cls, location: str) -> Location:
        if location.startswith("s3://"):
            bucket, _, prefix = location.removeprefix("s3://").partition("/")
            return cls("s3", bucket, prefix)
        if location.startswith("ssm:"):
            return cls("ssm", None, location.removeprefix("ssm:"))
        raise ValueError(f"location {location!r} is neither s3://bucket/prefix nor ssm:/path")

    def key(self, stack_name: str, image: str) -> str:
        # Empty segments dropped, as the daemon's reader does: "s3://b/" and "s3://b" agree.
        leaf = f"{image}.json" if self.store == "s3" else image
        joined = "/".join(s for p in (self.prefix, stack_name, leaf) for s in p.split("/") if s)
        return joined if self.store == "s3" else "/" + joined


def now_text() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class MigrationWorker:
    """Plays the migration instance of one stack in a thread."""

    def __init__(
        self,
        emulator: Emulator,
        stack_name: str,
        location: str,
        steps: int = 3,
        step_seconds: float = 0.1,
        fail_images: Iterable[str] = (),
        poll_seconds: float = 0.05,
        group: str = "MigrationAsg",
        irreversible_images: Iterable[str] = (),
    ) -> None:
        self.stack_name = stack_name
        self.location = Location.parse(location)
        self.steps = steps
        self.step_seconds = step_seconds
        self.fail_images = frozenset(fail_images)
        self.poll_seconds = poll_seconds
        self.group = group
        # Their records say rollbackSafe: false (the image before cannot run on the result);
        # the others leave the key out, as records before it existed did.
        self.irreversible_images = frozenset(irreversible_images)
        self._clients = {s: emulator.client(s) for s in ("cloudformation", "autoscaling", "ec2")}
        self._store = emulator.client(self.location.store)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._runs: list[Run] = []
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> MigrationWorker:
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._loop, name=f"migration-{self.stack_name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
            self._thread = None

    def __enter__(self) -> MigrationWorker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def runs(self) -> tuple[Run, ...]:
        with self._lock:
            return tuple(self._runs)

    def wait_for_run(self, image: str, count: int = 1, timeout: float = 10.0) -> Run:
        """The `count`-th finished run for `image`, waiting up to `timeout` seconds."""

        def found() -> Run | None:
            mine = [r for r in self.runs if r.image == image]
            return mine[count - 1] if len(mine) >= count else None

        return wait_for(found, timeout, f"migration run {count} of {image}")

    # --- the instance's life ----------------------------------------------------------

    def _loop(self) -> None:
        done: set[tuple[str, str]] = set()
        while not self._stopping.is_set():
            try:
                target = self._migration_instance()
                if target is not None and target not in done:
                    done.add(target)
                    self._record_run(self._migrate(*target))
            except (ClientError, BotoCoreError) as exc:
                log.debug("migration worker poll failed", error=str(exc))
            self._stopping.wait(self.poll_seconds)

    def _record_run(self, run: Run | None) -> None:
        if run is not None:
            with self._lock:
                self._runs.append(run)

    def _migration_instance(self) -> tuple[str, str] | None:
        """(image, instance id) of a running instance of the migration group, if any."""
        resources = self._clients["cloudformation"].describe_stack_resources(
            StackName=self.stack_name, LogicalResourceId=self.group
        )["StackResources"]
        if not resources:
            return None
        groups = self._clients["autoscaling"].describe_auto_scaling_groups(
            AutoScalingGroupNames=[resources[0]["PhysicalResourceId"]]
        )["AutoScalingGroups"]
        if not groups or groups[0]["DesiredCapacity"] < 1:
            return None
        for member in groups[0]["Instances"]:
            image = self._running_image(member["InstanceId"])
            if image is not None:
                return image, member["InstanceId"]
        return None

    def _running_image(self, instance_id: str) -> str | None:
        reservations = self._clients["ec2"].describe_instances(InstanceIds=[instance_id])
        for reservation in reservations["Reservations"]:
            for instance in reservation["Instances"]:
                if instance["State"]["Name"] == "running":
                    return str(instance["ImageId"])
        return None

    def _migrate(self, image: str, instance_id: str) -> Run | None:
        """Write running k/N for each step, then the outcome; None if stopped midway."""
        started = now_text()
        fail_at = (self.steps + 1) // 2 if image in self.fail_images else None
        for k in range(self.steps + 1):
            if fail_at is not None and k == fail_at:
                detail = f"migration {k} of {self.steps} failed"
                self._write(image, instance_id, "failed", k, started, detail)
                return Run(image, instance_id, "failed")
            self._write(image, instance_id, "running", k, started, f"{k} of {self.steps} applied")
            if self._stopping.wait(self.step_seconds):
                return None
            if self._running_image(instance_id) != image:
                return Run(image, instance_id, "running")  # terminated under the migration
        self._write(image, instance_id, "succeeded", self.steps, started, "all applied")
        return Run(image, instance_id, "succeeded")

    def _write(
        self, image: str, instance_id: str, status: str, k: int, started: str, detail: str
    ) -> None:
        record: dict[str, Any] = {
            "image": image,
            "status": status,
            "progress": f"{k}/{self.steps}",
            "instanceId": instance_id,
            "startedAt": started,
            "updatedAt": now_text(),
            "detail": detail,
        }
        if image in self.irreversible_images:
            record["rollbackSafe"] = False
        self._put(self.location.key(self.stack_name, image), json.dumps(record))

    def _put(self, key: str, body: str) -> None:
        store: Any = self._store
        if self.location.store == "s3":
            store.put_object(
                Bucket=self.location.bucket,
                Key=key,
                Body=body.encode(),
                ContentType="application/json",
            )
        else:
            store.put_parameter(Name=key, Value=body, Type="String", Overwrite=True)
