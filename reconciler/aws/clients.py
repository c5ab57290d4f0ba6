"""boto3 clients, built once and shared: one per (service, region, role, endpoint).

Rules of this file:
- Clients are created under a lock and cached; a boto3 client is thread-safe once built,
  a boto3 Session is not, so sessions and clients are only ever built inside the lock.
- Retries are botocore's "standard" mode (jittered backoff, a retry quota, throttling
  codes retried): the daemon never retries AWS calls itself.
- A role is assumed through STS with credentials that refresh themselves before expiry,
  session name "reconciler"; the STS calls go through this class too, so they are counted.
- Every HTTP attempt, retries included, is reported to `on_request(service, operation,
  result)` with result "ok", "throttled" or "error" (reconciler_aws_requests_total).
- With a `rate`, every HTTP attempt (retries too) first takes a token from the adaptive
  bucket of its (role, region, service), that is of one service of one account in one
  region, shared by every client of that key: the daemon never sends faster than its current
  rate, whatever the number of workers. A throttled attempt halves that bucket's rate
  (`ratelimit.py`); botocore retries it, so throttling is never a failure of its own
  (docs/decisions/0007-adaptive-rate.md). Services are botocore's names: `elb` and `elbv2`
  have a bucket each, as they have a label each in reconciler_aws_requests_total.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, cast

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import CredentialProvider, DeferredRefreshableCredentials

from reconciler import crashpoints
from reconciler.aws.ratelimit import AdaptiveBucket

if TYPE_CHECKING:
    from botocore.client import BaseClient
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_elb import ElasticLoadBalancingClient
    from mypy_boto3_elbv2 import ElasticLoadBalancingv2Client
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_sts import STSClient

OnRequest = Callable[[str, str, str], None]
Result = Literal["ok", "throttled", "error"]
Service = Literal[
    "cloudformation",
    "autoscaling",
    "ec2",
    "elb",
    "elbv2",
    "s3",
    "ssm",
    "sts",
    "cloudwatch",
    "dynamodb",
]

SESSION_NAME = "reconciler"
CONNECT_TIMEOUT = 5.0  # seconds; a slow connect is a network problem, fail and retry soon
READ_TIMEOUT = 20.0  # seconds; describe calls answer in well under a second

# botocore's own list (retries/standard.py); kept here so counting does not depend on a
# private attribute. An HTTP 429 counts as throttled whatever the code says.
THROTTLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)


def classify(response: Any, caught_exception: Any) -> Result:
    """The result of one HTTP attempt, from botocore's `needs-retry` event arguments."""
    if caught_exception is not None or response is None:
        return "error"  # no HTTP answer at all (connection refused, timeout, ...)
    http, parsed = response
    status = getattr(http, "status_code", 200)
    code = parsed.get("Error", {}).get("Code") if isinstance(parsed, dict) else None
    if status == 429 or code in THROTTLE_CODES:
        return "throttled"
    if status >= 300 or code:
        return "error"
    return "ok"


class Budget(NamedTuple):
    """The state of one (role, region, service) bucket, for the metrics."""

    service: str
    region: str
    rate: float  # requests per second allowed now
    waited_seconds: float  # in all, since the daemon started


def _limiter(bucket: AdaptiveBucket) -> Callable[..., None]:
    def wait_for_token(**_: Any) -> None:  # before-send: a non-None return would be the answer
        bucket.acquire()

    return wait_for_token


def _crashpoint(when: str) -> Callable[..., None]:
    # before-call/after-call fire once per API call (not per retry): `aws.UpdateStack.after`
    # is "AWS answered", whatever the attempts it took.
    def hit(model: Any = None, **_: Any) -> None:  # a non-None return would be the answer
        crashpoints.hit(f"aws.{getattr(model, 'name', 'unknown')}.{when}")

    return hit


class _AssumeRoleProvider(CredentialProvider):
    """Hands botocore credentials for `role_arn` that refresh through STS when near expiry."""

    METHOD = "reconciler-assume-role"
    CANONICAL_NAME = "ReconcilerAssumeRole"

    def __init__(self, sts: Callable[[], STSClient], role_arn: str) -> None:
        super().__init__()
        self._sts = sts
        self._role_arn = role_arn

    def load(self) -> DeferredRefreshableCredentials:
        # Deferred: no STS call until the first request needs credentials.
        return DeferredRefreshableCredentials(refresh_using=self._fetch, method=self.METHOD)

    def _fetch(self) -> dict[str, str]:
        creds = self._sts().assume_role(RoleArn=self._role_arn, RoleSessionName=SESSION_NAME)[
            "Credentials"
        ]
        expiry: dt.datetime = creds["Expiration"]
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": expiry.isoformat(),
        }


class Clients:
    """A thread-safe cache of boto3 clients, counting every request they make."""

    def __init__(
        self,
        endpoint_url: str | None = None,
        on_request: OnRequest | None = None,
        max_attempts: int = 5,
        rate: float | None = None,
        burst: int = 50,
    ) -> None:
        self.endpoint_url = endpoint_url
        self._on_request = on_request
        self.rate, self.burst = rate, burst  # upper bound per (role, region, service); None: none
        self._buckets: dict[tuple[str | None, str, str], AdaptiveBucket] = {}
        self._config = Config(
            # total_max_attempts counts the first try (botocore's max_attempts does not):
            # `max_attempts` here means what AWS_MAX_ATTEMPTS means, attempts in all.
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            # An emulator answers on one host name: bucket.localhost would not resolve.
            s3={"addressing_style": "path" if endpoint_url else "auto"},
        )
        self._lock = threading.RLock()  # re-entrant: a role's session builds its STS client
        self._sessions: dict[str | None, boto3.Session] = {}
        self._clients: dict[tuple[str, str, str | None, str | None], BaseClient] = {}

    # --- typed accessors --------------------------------------------------------------

    def cloudformation(self, region: str, role_arn: str | None = None) -> CloudFormationClient:
        return cast("CloudFormationClient", self.client("cloudformation", region, role_arn))

    def autoscaling(self, region: str, role_arn: str | None = None) -> AutoScalingClient:
        return cast("AutoScalingClient", self.client("autoscaling", region, role_arn))

    def ec2(self, region: str, role_arn: str | None = None) -> EC2Client:
        return cast("EC2Client", self.client("ec2", region, role_arn))

    def elb(self, region: str, role_arn: str | None = None) -> ElasticLoadBalancingClient:
        return cast("ElasticLoadBalancingClient", self.client("elb", region, role_arn))

    def elbv2(self, region: str, role_arn: str | None = None) -> ElasticLoadBalancingv2Client:
        return cast("ElasticLoadBalancingv2Client", self.client("elbv2", region, role_arn))

    def s3(self, region: str, role_arn: str | None = None) -> S3Client:
        return cast("S3Client", self.client("s3", region, role_arn))

    def ssm(self, region: str, role_arn: str | None = None) -> SSMClient:
        return cast("SSMClient", self.client("ssm", region, role_arn))

    def sts(self, region: str, role_arn: str | None = None) -> STSClient:
        return cast("STSClient", self.client("sts", region, role_arn))

    def cloudwatch(self, region: str, role_arn: str | None = None) -> BaseClient:
        # No mypy_boto3_cloudwatch among the dev dependencies: the untyped client.
        return self.client("cloudwatch", region, role_arn)

    # --- construction -----------------------------------------------------------------

    def client(self, service: Service, region: str, role_arn: str | None = None) -> BaseClient:
        key = (service, region, role_arn, self.endpoint_url)
        with self._lock:
            found = self._clients.get(key)
            if found is None:
                found = self._build(service, region, role_arn)
                self._clients[key] = found
            return found

    def _build(self, service: str, region: str, role_arn: str | None) -> BaseClient:
        session = self._session(region, role_arn)
        client: BaseClient = session.client(
            service,  # type: ignore[call-overload]
            region_name=region,
            endpoint_url=self.endpoint_url,
            config=self._config,
        )
        bucket = None if self.rate is None else self.bucket(service, region, role_arn)
        if bucket is not None:
            client.meta.events.register("before-send.*", _limiter(bucket))
        if self._on_request is not None or bucket is not None:
            client.meta.events.register("needs-retry.*", self._attempted(service, bucket))
        if crashpoints.ACTIVE:  # a test facility: no hooks at all in normal runs
            client.meta.events.register("before-call.*", _crashpoint("before"))
            client.meta.events.register("after-call.*", _crashpoint("after"))
        return client

    def bucket(self, service: str, region: str, role_arn: str | None = None) -> AdaptiveBucket:
        """The rate budget shared by every client of one service of one account and region."""
        assert self.rate is not None
        key = (role_arn, region, service)
        with self._lock:
            found = self._buckets.get(key)
            if found is None:
                found = AdaptiveBucket(self.rate, self.burst)
                self._buckets[key] = found
            return found

    def budgets(self) -> list[Budget]:
        """Every bucket's current rate and total wait, one per (role, region, service) used."""
        with self._lock:
            buckets = sorted(self._buckets.items(), key=lambda item: str(item[0]))
        return [
            Budget(service, region, bucket.rate, bucket.waited_seconds)
            for (_, region, service), bucket in buckets
        ]

    def _session(self, region: str, role_arn: str | None) -> boto3.Session:
        # One session per role: its credentials are shared by every client of that role.
        # The STS client that assumes the role uses the default credentials in the region
        # of the first client built for that role (regional STS endpoints).
        session = self._sessions.get(role_arn)
        if session is None:
            core = botocore.session.get_session()
            if role_arn is not None:
                provider = _AssumeRoleProvider(lambda: self.sts(region), role_arn)
                core.get_component("credential_provider").insert_before("env", provider)
            session = boto3.Session(botocore_session=core)
            self._sessions[role_arn] = session
        return session

    def _attempted(self, service: str, bucket: AdaptiveBucket | None) -> Callable[..., None]:
        """needs-retry, once per HTTP attempt: count it, and tell the bucket of throttling."""
        on_request = self._on_request

        def seen(
            response: Any = None, caught_exception: Any = None, **kwargs: Any
        ) -> None:  # botocore reads a non-None return as "retry after N seconds"
            result = classify(response, caught_exception)
            if result == "throttled" and bucket is not None:
                bucket.throttled()
            if on_request is not None:
                name = getattr(kwargs.get("operation"), "name", "unknown")
                on_request(service, name, result)

        return seen
