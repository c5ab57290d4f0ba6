"""The migration record (CONTRACT section 3) read from S3 and SSM."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from reconciler import spec
from reconciler.aws.clients import Clients
from reconciler.aws.records import RecordInvalid, parse_record, read_record, record_key
from tests.integration.conftest import REGION

IMAGE = "ami-37884c4d"
GOOD = {
    "image": IMAGE,
    "status": "succeeded",
    "progress": "40/40",
    "instanceId": "i-0abc",
    "startedAt": "2026-11-26T10:00:00Z",
    "updatedAt": "2026-11-26T10:02:00+01:00",
    "detail": "free text",
}


def _spec(location: str) -> spec.Spec:
    check = "s3" if location.startswith("s3:") else "ssm"
    return spec.Spec.model_validate(
        {
            "stackName": "Stack1",
            "region": REGION,
            "image": IMAGE,
            "migration": {"check": check, "location": location},
        }
    )


def _put_s3(body: bytes, key: str = f"biglearn-api/Stack1/{IMAGE}.json") -> spec.Spec:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="deploy-status")
    s3.put_object(Bucket="deploy-status", Key=key, Body=body)
    return _spec("s3://deploy-status/biglearn-api")


def _put_ssm(value: str) -> spec.Spec:
    ssm = boto3.client("ssm", region_name=REGION)
    ssm.put_parameter(Name=f"/deploy/biglearn-api/Stack1/{IMAGE}", Value=value, Type="String")
    return _spec("ssm:/deploy/biglearn-api")


def test_keys_follow_the_contract() -> None:
    """s3://BUCKET/PREFIX/STACK/IMAGE.json and /PATH/PREFIX/STACK/IMAGE; slashes tolerated."""
    s3 = record_key(_spec("s3://deploy-status/a/b/").migration, "Stack1", IMAGE)
    assert str(s3) == f"s3://deploy-status/a/b/Stack1/{IMAGE}.json"
    assert (
        str(record_key(_spec("s3://bucket").migration, "S", IMAGE)) == f"s3://bucket/S/{IMAGE}.json"
    )
    ssm = record_key(_spec("ssm:/deploy/x").migration, "Stack1", IMAGE)
    assert ssm.key == f"/deploy/x/Stack1/{IMAGE}"


def test_s3_record_is_parsed_with_utc_times(clients: Clients) -> None:
    """Every field is read; times with Z or an offset become aware UTC datetimes."""
    record = read_record(clients, _put_s3(json.dumps(GOOD).encode()), IMAGE)
    assert record is not None
    assert record.status == "succeeded"
    assert record.progress == "40/40"
    assert record.instance_id == "i-0abc"
    assert record.detail == "free text"
    assert record.started_at == dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)
    assert record.updated_at == dt.datetime(2026, 11, 26, 9, 2, tzinfo=dt.UTC)


def test_ssm_record_is_parsed(clients: Clients) -> None:
    """The same record as an SSM parameter reads the same."""
    record = read_record(clients, _put_ssm(json.dumps(GOOD)), IMAGE)
    assert record is not None and record.status == "succeeded" and record.image == IMAGE


def test_absent_s3_record_is_none(clients: Clients) -> None:
    """No object yet (the migration has not started): None, not an error."""
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="deploy-status")
    assert read_record(clients, _spec("s3://deploy-status/biglearn-api"), IMAGE) is None


def test_absent_ssm_record_is_none(clients: Clients) -> None:
    """No parameter yet: None."""
    assert read_record(clients, _spec("ssm:/deploy/biglearn-api"), IMAGE) is None


def _without(field: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != field}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps(_without("status")).encode(), "status is missing"),
        (json.dumps(_without("updatedAt")).encode(), "updatedAt is missing"),
        (json.dumps(_without("image")).encode(), "image is missing"),
        (json.dumps({**GOOD, "status": "done"}).encode(), "'done' is not running"),
        (json.dumps({**GOOD, "updatedAt": "2026-11-26T10:02:00"}).encode(), "has no offset"),
        (json.dumps({**GOOD, "updatedAt": "yesterday"}).encode(), "not an RFC 3339 time"),
        (json.dumps({**GOOD, "progress": 12}).encode(), "progress must be a string"),
        (json.dumps({**GOOD, "startedAt": 5}).encode(), "startedAt must be a string"),
        (json.dumps({**GOOD, "instanceId": ["i-1"]}).encode(), "instanceId must be a string"),
        (json.dumps({**GOOD, "image": ""}).encode(), "image must not be empty"),
        (json.dumps({**GOOD, "image": "ami-00000000"}).encode(), "does not count"),
        (json.dumps({**GOOD, "rollbackSafe": "false"}).encode(), "rollbackSafe must be true or"),
        (json.dumps({**GOOD, "rollbackSafe": 0}).encode(), "rollbackSafe must be true or false"),
        (json.dumps({**GOOD, "rollbackSafe": None}).encode(), "rollbackSafe must be true or"),
    ],
)
def test_invalid_s3_record_raises_naming_the_key(clients: Clients, body: bytes, says: str) -> None:
    """A present record that cannot count raises RecordInvalid naming its key and the fault;
    that includes a record whose image is not the key's (CONTRACT: it does not count)."""
    with pytest.raises(RecordInvalid) as caught:
        read_record(clients, _put_s3(body), IMAGE)
    assert f"s3://deploy-status/biglearn-api/Stack1/{IMAGE}.json" in str(caught.value)
    assert says in str(caught.value)


def test_invalid_ssm_record_raises_naming_the_key(clients: Clients) -> None:
    """The same rules hold for SSM; the message names the parameter."""
    with pytest.raises(RecordInvalid, match=f"ssm:/deploy/biglearn-api/Stack1/{IMAGE}"):
        read_record(clients, _put_ssm('{"image": "x"'), IMAGE)


def test_missing_bucket_is_an_aws_error_not_an_absent_record(clients: Clients) -> None:
    """A bucket that does not exist is a configuration fault a person must see."""
    with pytest.raises(ClientError):
        read_record(clients, _spec("s3://no-such-bucket/x"), IMAGE)


def test_a_record_with_keys_it_does_not_know_still_counts() -> None:
    """A writer may add its own keys (CONTRACT section 3 names the ones read): ignored."""
    raw = json.dumps({**GOOD, "exitCode": 0, "host": {"name": "m1"}})
    assert parse_record(raw, IMAGE, "here") == parse_record(json.dumps(GOOD), IMAGE, "here")


def test_every_bad_field_of_a_record_is_named_on_one_line() -> None:
    """Several faults: one line naming each field, never a traceback-like dump."""
    raw = json.dumps({**_without("image"), "status": "done", "detail": 3})
    with pytest.raises(RecordInvalid) as caught:
        parse_record(raw, IMAGE, "s3://b/k.json")
    assert str(caught.value) == (
        "migration record s3://b/k.json: image is missing; "
        "status: 'done' is not running, succeeded or failed; detail must be a string"
    )


@pytest.mark.parametrize(
    ("given", "safe"),
    [({}, True), ({"rollbackSafe": True}, True), ({"rollbackSafe": False}, False)],
)
def test_rollback_safe_is_true_unless_the_record_says_false(
    given: dict[str, bool], safe: bool
) -> None:
    """A migration the image before cannot run on says so; records that do not say are
    safe, as every record was before the key existed."""
    record = parse_record(json.dumps({**GOOD, **given}), IMAGE, "here")
    assert record.rollback_safe is safe
