"""Clients: one client per (service, region, role), every HTTP attempt counted, roles assumed,
one adaptive rate budget per (role, region, service)."""

from __future__ import annotations

import logging
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.retries.standard import ExponentialBackoff
from moto.server import ThreadedMotoServer
from prometheus_client.parser import text_string_to_metric_families

from reconciler import assemble, settings
from reconciler.aws.clients import Clients, classify
from reconciler.embedded import Emulator
from reconciler.metrics import Metrics
from tests.integration.conftest import REGION, Stack

Requests = list[tuple[str, str, str]]
ROLE = "arn:aws:iam::123456789012:role/deployer"
THROTTLED = (
    b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
    b"<Message>Rate exceeded</Message></Error><RequestId>r</RequestId></ErrorResponse>"
)


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore retries at once: its backoff takes `random` as a default argument, bound at
    import, so only the delay itself can be patched."""
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)


def _samples(m: Metrics, metric: str) -> dict[tuple[str, str], float]:
    """(service, region) -> value of every `metric` sample in the exposition."""
    body, _ = m.exposition()
    return {
        (sample.labels["service"], sample.labels["region"]): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name == metric
    }


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def test_clients_are_built_once_per_service_region_and_role(aws: None) -> None:
    """The cache returns the same client for the same key, from any thread."""
    clients = Clients()
    seen: list[object] = []
    threads = [
        threading.Thread(target=lambda: seen.append(clients.cloudformation(REGION)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in seen}) == 1
    assert clients.cloudformation("eu-west-1") is not seen[0]
    assert clients.cloudformation(REGION, ROLE) is not seen[0]
    assert clients.s3(REGION) is clients.s3(REGION)


def test_clients_use_standard_retries_and_timeouts(aws: None) -> None:
    """Retry mode standard with the given attempts; bounded connect and read timeouts."""
    config: Any = Clients(max_attempts=7).ssm(REGION).meta.config  # stubs omit the fields
    assert config.retries == {"mode": "standard", "total_max_attempts": 7}
    assert config.connect_timeout == 5.0 and config.read_timeout == 20.0


def test_every_request_is_counted_by_service_and_operation(
    stack: Stack, clients: Clients, requests: Requests
) -> None:
    """on_request sees (service, operation, "ok") for each successful call."""
    clients.cloudformation(REGION).describe_stacks(StackName=stack.name)
    clients.ec2(REGION).describe_instances()
    assert requests == [
        ("cloudformation", "DescribeStacks", "ok"),
        ("ec2", "DescribeInstances", "ok"),
    ]


def test_errors_are_counted_as_errors(clients: Clients, requests: Requests) -> None:
    """A service error (not throttling) counts once as "error": it is not retried."""
    with pytest.raises(Exception, match="does not exist"):
        clients.cloudformation(REGION).describe_stacks(StackName="Nope")
    assert requests == [("cloudformation", "DescribeStacks", "error")]


def test_throttled_attempts_and_their_retry_are_each_counted(
    stack: Stack, clients: Clients, requests: Requests, no_backoff: None
) -> None:
    """A throttled first attempt counts as "throttled", the retry that succeeds as "ok"."""
    cfn = clients.cloudformation(REGION)
    answers = [AWSResponse("https://x", 400, HTTPHeaders(), _Raw(THROTTLED))]

    def throttle_once(**_: Any) -> Any:
        return answers.pop() if answers else None  # then moto answers

    cfn.meta.events.register_first("before-send.cloudformation.DescribeStacks", throttle_once)
    cfn.describe_stacks(StackName=stack.name)
    assert requests == [
        ("cloudformation", "DescribeStacks", "throttled"),
        ("cloudformation", "DescribeStacks", "ok"),
    ]


def test_classify_reads_http_status_and_error_codes() -> None:
    """429 or a throttling code is "throttled"; no answer or another error is "error"."""

    class Http:
        def __init__(self, status: int) -> None:
            self.status_code = status

    assert classify((Http(200), {}), None) == "ok"
    assert classify((Http(429), {}), None) == "throttled"
    assert classify((Http(400), {"Error": {"Code": "RequestLimitExceeded"}}), None) == "throttled"
    assert classify((Http(400), {"Error": {"Code": "ValidationError"}}), None) == "error"
    assert classify((Http(503), {}), None) == "error"
    assert classify(None, ConnectionError()) == "error"


def test_a_role_is_assumed_once_with_session_name_reconciler(
    stack: Stack, clients: Clients, requests: Requests
) -> None:
    """With roleArn, calls run as the assumed role (session "reconciler"); the AssumeRole
    call is made lazily, once, and counted like any other."""
    cfn = clients.cloudformation(REGION, ROLE)
    assert requests == []  # deferred: no STS call until a request needs credentials
    cfn.describe_stacks(StackName=stack.name)
    clients.autoscaling(REGION, ROLE).describe_auto_scaling_groups()
    identity = clients.sts(REGION, ROLE).get_caller_identity()
    assert identity["Arn"] == "arn:aws:sts::123456789012:assumed-role/deployer/reconciler"
    assert [op for _, op, _ in requests].count("AssumeRole") == 1
    assert requests[0] == ("sts", "AssumeRole", "ok")


def test_an_endpoint_url_sends_every_service_there(fake_credentials: None) -> None:
    """--endpoint-url (a local emulator): clients talk HTTP to it, and are still counted."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        _, port = server.get_host_and_port()
        # moto's backends are per process: start from none of what earlier tests made.
        reset = f"http://127.0.0.1:{port}/moto-api/reset"
        urllib.request.urlopen(urllib.request.Request(reset, method="POST"), timeout=10).close()
        seen: Requests = []
        clients = Clients(f"http://localhost:{port}", on_request=lambda *r: seen.append(r))
        clients.s3(REGION).create_bucket(Bucket="records")
        names = [b["Name"] for b in clients.s3(REGION).list_buckets()["Buckets"]]
        assert names == ["records"]
        assert seen == [("s3", "CreateBucket", "ok"), ("s3", "ListBuckets", "ok")]
    finally:
        server.stop()


def test_each_service_of_each_account_and_region_has_one_budget(aws: None) -> None:
    """Buckets are keyed by (role, region, service): every client and thread of one key
    draws on the same one, another service, region or role has its own."""
    clients = Clients(rate=50.0)
    cfn = clients.bucket("cloudformation", REGION)
    assert clients.bucket("cloudformation", REGION, None) is cfn
    others = [
        clients.bucket("ec2", REGION),
        clients.bucket("cloudformation", "eu-west-1"),
        clients.bucket("cloudformation", REGION, ROLE),
    ]
    assert len({id(cfn), *map(id, others)}) == 4
    assert Clients().budgets() == []  # no rate: no buckets, nothing waits


def test_requests_wait_only_for_their_own_services_budget(aws: None) -> None:
    """At 10/s with a burst of 1, three CloudFormation calls from two threads queue up on
    one bucket; two EC2 calls of the same account in between do not wait for them."""
    clients = Clients(rate=10.0, burst=1)
    cfn = clients.cloudformation(REGION)
    ec2 = clients.ec2(REGION)
    ec2.describe_instances()
    threads = [threading.Thread(target=cfn.describe_stacks) for _ in range(2)]
    for t in threads:
        t.start()
    cfn.describe_stacks()
    for t in threads:
        t.join()
    budgets = {(b.service, b.region): b for b in clients.budgets()}
    assert set(budgets) == {("cloudformation", REGION), ("ec2", REGION)}
    assert budgets["cloudformation", REGION].waited_seconds > 0.1
    assert budgets["ec2", REGION].waited_seconds == 0
    assert budgets["ec2", REGION].rate == budgets["cloudformation", REGION].rate == 10.0


def test_a_throttled_service_gets_half_the_rate_and_its_requests_are_still_answered(
    fake_credentials: None, no_backoff: None
) -> None:
    """The emulator throttles 30% of CloudFormation calls: each call is still answered
    (botocore retries), the throttled attempts are counted, CloudFormation's budget is
    halved (a burst of throttles halves it once) and EC2's is not, as the metrics show."""
    with Emulator(region=REGION, seed=7) as emulator:
        m = Metrics()
        conf = settings.Settings(aws=settings.AwsSettings(endpoint_url=emulator.endpoint_url))
        clients = assemble.clients(conf, m)  # as the daemon builds them
        clients.ec2(REGION).describe_instances()
        emulator.faults.throttle(0.3, service="cloudformation")
        for _ in range(10):
            assert clients.cloudformation(REGION).describe_stacks()["Stacks"] == []
    throttled = _samples_by_result(m, "throttled")
    assert throttled == emulator.faults.injected > 0
    rates = _samples(m, "reconciler_aws_rate_limit")
    assert rates["ec2", REGION] == 50.0
    assert 50.0 / 32 <= rates["cloudformation", REGION] < 30.0
    waits = _samples(m, "reconciler_aws_rate_wait_seconds_total")
    assert set(waits) == {("cloudformation", REGION), ("ec2", REGION)}


def _samples_by_result(m: Metrics, result: str) -> float:
    body, _ = m.exposition()
    return sum(
        sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name == "reconciler_aws_requests_total" and sample.labels["result"] == result
    )
