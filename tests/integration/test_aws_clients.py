"""Clients: one client per (service, region, role), every HTTP attempt counted, roles assumed."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from moto.server import ThreadedMotoServer

from reconciler.aws.clients import Clients, classify
from tests.integration.conftest import REGION, Stack

Requests = list[tuple[str, str, str]]
ROLE = "arn:aws:iam::123456789012:role/deployer"
THROTTLED = (
    b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
    b"<Message>Rate exceeded</Message></Error><RequestId>r</RequestId></ErrorResponse>"
)


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
    stack: Stack, clients: Clients, requests: Requests, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A throttled first attempt counts as "throttled", the retry that succeeds as "ok"."""
    monkeypatch.setattr("random.random", lambda: 0.0)  # no backoff sleep in the test
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
        seen: Requests = []
        clients = Clients(f"http://localhost:{port}", on_request=lambda *r: seen.append(r))
        clients.s3(REGION).create_bucket(Bucket="records")
        names = [b["Name"] for b in clients.s3(REGION).list_buckets()["Buckets"]]
        assert names == ["records"]
        assert seen == [("s3", "CreateBucket", "ok"), ("s3", "ListBuckets", "ok")]
    finally:
        server.stop()
