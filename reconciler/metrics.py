"""The daemon's Prometheus metrics (CONTRACT section 6), in a registry of their own.

Rules of this file:
- Every metric lives in the `Metrics` instance's own `CollectorRegistry`: no module-level
  globals, so tests and the demo can run several daemons in one process.
- The contract's names and labels are fixed; additions are allowed, renames are not.
- Label values come from a closed set wherever the contract gives one, checked here, so a
  caller's typo cannot grow the series count.
- Every series that carries a `name` label is recorded, so `forget(name)` can remove all of
  them when a spec leaves git, whatever the prometheus_client version offers.
- State owned elsewhere (the AWS rate budgets) is read at scrape time through a callback
  given to `watch_budgets`, never copied in on a timer: a scrape shows it as it is.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Literal, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

_M = TypeVar("_M", Counter, Gauge, Histogram)
# (service, region, requests per second allowed now, seconds waited in all): one AWS rate
# budget as `aws.Clients.budgets()` reports it; a plain tuple, so metrics needs no aws import.
BudgetState = tuple[str, str, float, float]

# A reconcile step is a handful of AWS reads, sometimes one update call: milliseconds when
# idle, tens of seconds only when AWS is slow or throttling.
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# A rollout is two stack updates and a migration: minutes, up to the 2 h the contract names.
ROLLOUT_BUCKETS = (60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0, 5400.0, 7200.0)

RECONCILE_RESULTS = ("ok", "error")
UPDATE_PHASES = ("migrate", "switch", "scale")
UPDATE_RESULTS = ("ok", "noop", "error")
ROLLOUT_RESULTS = ("succeeded", "failed")
GIT_RESULTS = ("ok", "error")
NOTIFICATION_RESULTS = ("ok", "error", "gave_up")
IMAGE_CHECK_RESULTS = ("newer", "current", "none", "error")
BUMP_PR_RESULTS = ("opened", "updated", "unchanged", "declined", "failed")

# The classic text format, named outright: every Prometheus version reads it, and our names
# need none of the newer format's escaping (prometheus_client's "latest" moves with releases).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_INFO_LABELS = ("name", "stack", "region", "revision", "phase", "desired_image", "live_image")


def _check(kind: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{kind} must be one of {', '.join(allowed)}, not {value!r}")


def _package_version() -> str:
    try:
        return importlib.metadata.version("reconciler")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class Metrics:
    """The reconciler's metrics; thread-safe, one instance per daemon."""

    def __init__(self, version: str | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self._info: dict[str, tuple[str, ...]] = {}  # name -> label values of its stack_info
        self._series: dict[str, set[tuple[Counter | Gauge | Histogram, tuple[str, ...]]]] = {}
        self._spec_error_files: set[str] = set()
        # fleet -> the (step, phase) label values of its reconciler_fleet_members series
        self._fleet_series: dict[str, set[tuple[str, str]]] = {}
        self._define_stack_metrics()
        self._define_global_metrics()
        self._budgets = _Budgets()
        self.registry.register(self._budgets)
        self.build_info.labels(version or _package_version()).set(1)
        for result in GIT_RESULTS:
            self.git_fetch_total.labels(result)  # at 0, so rate() works before the first error

    def _define_stack_metrics(self) -> None:
        r = self.registry
        self.stack_info = Gauge(
            "reconciler_stack_info", "Per managed stack: 1, with its identity and state as labels.",
            _INFO_LABELS, registry=r,
        )  # fmt: skip
        self.stack_in_sync = Gauge(
            "reconciler_stack_in_sync",
            "1 when the live stack matches its spec, whatever the phase (paused included).",
            ["name"], registry=r,
        )  # fmt: skip
        self.stack_paused = Gauge(
            "reconciler_stack_paused", "1 while the stack is paused.", ["name"], registry=r
        )
        self.stack_failures = Gauge(
            "reconciler_stack_failures",
            "Consecutive failures of the stack's current rollout (0 when healthy).",
            ["name"], registry=r,
        )  # fmt: skip
        self.stack_drifted = Gauge(
            "reconciler_stack_drifted",
            "1 while a managed group of the stack differs from its template and parameters.",
            ["name"], registry=r,
        )  # fmt: skip
        self.migration_running = Gauge(
            "reconciler_migration_running", "1 while the stack's migration phase runs.",
            ["name"], registry=r,
        )  # fmt: skip
        self.reconcile_total = Counter(
            "reconciler_reconcile_total", "Reconcile steps by result.", ["name", "result"],
            registry=r,
        )  # fmt: skip
        self.reconcile_duration = Histogram(
            "reconciler_reconcile_duration_seconds", "Time one reconcile step took.", ["name"],
            buckets=RECONCILE_BUCKETS, registry=r,
        )  # fmt: skip
        self.stack_updates_total = Counter(
            "reconciler_stack_updates_total", "CloudFormation stack updates sent, by phase.",
            ["name", "phase", "result"], registry=r,
        )  # fmt: skip
        self.rollouts_total = Counter(
            "reconciler_rollouts_total", "Finished rollouts by result.", ["name", "result"],
            registry=r,
        )  # fmt: skip
        self.rollout_duration = Histogram(
            "reconciler_rollout_duration_seconds", "Time from phase 1 to a finished rollout.",
            ["name"], buckets=ROLLOUT_BUCKETS, registry=r,
        )  # fmt: skip

    def _define_global_metrics(self) -> None:
        r = self.registry
        self.build_info = Gauge(
            "reconciler_build_info", "1, with the running version as a label.", ["version"],
            registry=r,
        )  # fmt: skip
        self.git_fetch_total = Counter(
            "reconciler_git_fetch_total", "Fetches of the spec repository by result.", ["result"],
            registry=r,
        )  # fmt: skip
        self.git_last_success = Gauge(
            "reconciler_git_last_success_timestamp_seconds",
            "Unix time of the last successful fetch of the spec repository.", registry=r,
        )  # fmt: skip
        self.spec_errors_gauge = Gauge(
            "reconciler_spec_errors", "Validation errors per spec file (files with none absent).",
            ["file"], registry=r,
        )  # fmt: skip
        self.git_unverified_total = Counter(
            "reconciler_git_unverified_commits_total",
            "Branch heads not deployed: not signed by an allowed key (--verify-signatures).",
            registry=r,
        )  # fmt: skip
        self.aws_requests_total = Counter(
            "reconciler_aws_requests_total", "AWS API calls by service, operation and result.",
            ["service", "operation", "result"], registry=r,
        )  # fmt: skip
        self.http_requests_total = Counter(
            "reconciler_http_requests_total", "Requests to the daemon's HTTP server.",
            ["handler", "code"], registry=r,
        )  # fmt: skip
        self.fleet_members = Gauge(
            "reconciler_fleet_members",
            "Members of a fleet by step (1-based, in order) and stack phase.",
            ["fleet", "step", "phase"], registry=r,
        )  # fmt: skip
        self.fleet_halted = Gauge(
            "reconciler_fleet_halted",
            "1 while the fleet starts no rollout (failure budget spent, or halted by a person).",
            ["fleet"], registry=r,
        )  # fmt: skip
        self.notifications_total = Counter(
            "reconciler_notifications_total",
            "Notification delivery attempts by sink name (never its URL) and result.",
            ["sink", "result"], registry=r,
        )  # fmt: skip
        self.image_policy_checks_total = Counter(
            "reconciler_image_policy_checks_total",
            "Checks of an imagePolicy (one per policy, account and region) by result.",
            ["result"], registry=r,
        )  # fmt: skip
        self.bump_prs_total = Counter(
            "reconciler_bump_prs_total",
            "What the forge did with a bump branch's pull request, by result.",
            ["result"], registry=r,
        )  # fmt: skip

    # --- per stack ------------------------------------------------------------------------

    def _child(self, metric: _M, *labels: str) -> _M:
        """The series `labels` of `metric`, recorded under its name (always the first label)."""
        with self._lock:
            self._series.setdefault(labels[0], set()).add((metric, labels))
        return metric.labels(*labels)

    def _known(self, name: str) -> None:
        """Create a stack's counters at 0 so dashboards see them before the first event."""
        if name in self._series:
            return
        for result in RECONCILE_RESULTS:
            self._child(self.reconcile_total, name, result)
        for result in ROLLOUT_RESULTS:
            self._child(self.rollouts_total, name, result)
        for phase in UPDATE_PHASES:
            for result in UPDATE_RESULTS:
                self._child(self.stack_updates_total, name, phase, result)
        self._child(self.reconcile_duration, name)
        self._child(self.rollout_duration, name)

    def observe_stack(
        self,
        name: str,
        stack: str,
        region: str,
        revision: str,
        phase: str,
        desired_image: str,
        live_image: str,
        in_sync: bool,
        paused: bool,
        migration_running: bool,
        failures: int = 0,
        drifted: bool = False,
    ) -> None:
        """Record what was observed of one stack; replaces its previous stack_info series."""
        self._known(name)
        labels = (name, stack, region, revision, phase, desired_image, live_image)
        with self._lock:
            old = self._info.get(name)
            self._info[name] = labels
            if old is not None and old != labels:
                self.stack_info.remove(*old)
                self._series[name].discard((self.stack_info, old))
        self._child(self.stack_info, *labels).set(1)
        self._child(self.stack_in_sync, name).set(int(in_sync))
        self._child(self.stack_paused, name).set(int(paused))
        self._child(self.migration_running, name).set(int(migration_running))
        self._child(self.stack_failures, name).set(failures)
        self._child(self.stack_drifted, name).set(int(drifted))

    def reconcile(self, name: str, result: Literal["ok", "error"], seconds: float) -> None:
        """Count one reconcile step of `name` and record how long it took."""
        _check("result", result, RECONCILE_RESULTS)
        self._known(name)
        self._child(self.reconcile_total, name, result).inc()
        self._child(self.reconcile_duration, name).observe(seconds)

    def stack_update(
        self, name: str, phase: Literal["migrate", "switch", "scale"], result: str
    ) -> None:
        """Count one stack update sent (or found unnecessary: `noop`) for `name`."""
        _check("phase", phase, UPDATE_PHASES)
        _check("result", result, UPDATE_RESULTS)
        self._known(name)
        self._child(self.stack_updates_total, name, phase, result).inc()

    def rollout(
        self, name: str, result: Literal["succeeded", "failed"], seconds: float | None
    ) -> None:
        """Count a finished rollout; its duration when known (not after a restart mid-way)."""
        _check("result", result, ROLLOUT_RESULTS)
        self._known(name)
        self._child(self.rollouts_total, name, result).inc()
        if seconds is not None:
            self._child(self.rollout_duration, name).observe(seconds)

    def forget(self, name: str) -> None:
        """Remove every series labelled `name`: its spec left git."""
        with self._lock:
            series = self._series.pop(name, set())
            self._info.pop(name, None)
        for metric, labels in series:
            # Older prometheus_client raises KeyError for a series never observed.
            with contextlib.suppress(KeyError):
                metric.remove(*labels)

    # --- global ---------------------------------------------------------------------------

    def git_fetch(self, result: Literal["ok", "error"], at: float | None = None) -> None:
        """Count a fetch of the spec repository; a success also stamps its time (default now)."""
        _check("result", result, GIT_RESULTS)
        self.git_fetch_total.labels(result).inc()
        if result == "ok":
            self.git_last_success.set(time.time() if at is None else at)

    def git_unverified(self) -> None:
        """Count a branch head refused for its signature."""
        self.git_unverified_total.inc()

    def spec_errors(self, counts: Mapping[str, int]) -> None:
        """Replace the whole set of per-file error counts; files not given are removed."""
        with self._lock:
            for gone in self._spec_error_files - counts.keys():
                self.spec_errors_gauge.remove(gone)
            for file, count in counts.items():
                self.spec_errors_gauge.labels(file).set(count)
            self._spec_error_files = set(counts)

    def observe_fleet(
        self, fleet: str, members: Mapping[tuple[int, str], int], halted: bool
    ) -> None:
        """Replace a fleet's gauges: members per (1-based step, phase); pairs not given go."""
        series = {(str(step), phase): count for (step, phase), count in members.items()}
        with self._lock:
            for step, phase in self._fleet_series.get(fleet, set()) - series.keys():
                with contextlib.suppress(KeyError):
                    self.fleet_members.remove(fleet, step, phase)
            for (step, phase), count in series.items():
                self.fleet_members.labels(fleet, step, phase).set(count)
            self._fleet_series[fleet] = set(series)
            self.fleet_halted.labels(fleet).set(int(halted))

    def keep_fleets(self, fleets: Iterable[str]) -> None:
        """Remove the series of every fleet not in `fleets`: it left git and was let go."""
        keep = set(fleets)
        with self._lock:
            for fleet in set(self._fleet_series) - keep:
                for step, phase in self._fleet_series.pop(fleet):
                    with contextlib.suppress(KeyError):
                        self.fleet_members.remove(fleet, step, phase)
                with contextlib.suppress(KeyError):
                    self.fleet_halted.remove(fleet)

    def aws_request(self, service: str, operation: str, result: str) -> None:
        """Count one AWS API call; `result` is `ok` or a short error code."""
        self.aws_requests_total.labels(service, operation, result).inc()

    def http_request(self, handler: str, code: int) -> None:
        """Count one HTTP request by route (not path: paths carry stack names) and status."""
        self.http_requests_total.labels(handler, str(code)).inc()

    def notification(self, sink: str, result: Literal["ok", "error", "gave_up"]) -> None:
        """Count one delivery attempt to the sink named `sink`."""
        _check("result", result, NOTIFICATION_RESULTS)
        self.notifications_total.labels(sink, result).inc()

    def image_policy_check(self, result: str) -> None:
        """Count one check of one policy: newer, current, none (no match) or error."""
        _check("result", result, IMAGE_CHECK_RESULTS)
        self.image_policy_checks_total.labels(result).inc()

    def bump_pr(self, result: str) -> None:
        """Count one proposal of a bump branch to the forge, by its Proposal result."""
        _check("result", result, BUMP_PR_RESULTS)
        self.bump_prs_total.labels(result).inc()

    def watch_budgets(self, budgets: Callable[[], Iterable[BudgetState]]) -> None:
        """Read `budgets()` at every scrape for reconciler_aws_rate_limit and _wait_seconds."""
        self._budgets.sources.append(budgets)

    def exposition(self) -> tuple[bytes, str]:
        """The registry in Prometheus text format, and its content type."""
        return generate_latest(_WithoutCreated(self.registry)), CONTENT_TYPE


class _Budgets:
    """The AWS rate budgets, read from their owners at scrape time.

    Labels are (service, region); two accounts (roles) with a bucket for the same service
    and region show as one series: the lower rate (the account AWS throttles more) and the
    sum of the waits.
    """

    def __init__(self) -> None:
        self.sources: list[Callable[[], Iterable[BudgetState]]] = []

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())  # without samples; describe() keeps collect() unread

    def collect(self) -> Iterator[Metric]:
        rates: dict[tuple[str, str], float] = {}
        waits: dict[tuple[str, str], float] = {}
        for source in list(self.sources):
            for service, region, rate, waited in source():
                key = (service, region)
                rates[key] = min(rate, rates.get(key, rate))
                waits[key] = waits.get(key, 0.0) + waited
        limit, wait = self._families()
        for key in sorted(rates):
            limit.add_metric(list(key), rates[key])
            wait.add_metric(list(key), waits[key])
        yield limit
        yield wait

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, CounterMetricFamily]:
        labels = ["service", "region"]
        limit = GaugeMetricFamily(
            "reconciler_aws_rate_limit",
            "AWS requests per second allowed now per service and region; halves on throttling.",
            labels=labels,
        )
        wait = CounterMetricFamily(
            "reconciler_aws_rate_wait_seconds",
            "Seconds AWS requests waited for their service's rate budget.",
            labels=labels,
        )
        return limit, wait


class _WithoutCreated:
    """A view of a registry without the `_created` samples.

    The text format carries them as separate gauges, which Prometheus stores as series of
    their own: twice the series for no use. prometheus_client can only turn them off
    process-wide, which would reach into other registries in the same process.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield metric
