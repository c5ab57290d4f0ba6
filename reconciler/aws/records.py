"""The migration record (CONTRACT section 3): where it lives and how it is read.

Rules of this file:
- The key is `s3://BUCKET/PREFIX/STACKNAME/IMAGE.json` or `/PATH/PREFIX/STACKNAME/IMAGE`
  (SSM); an absent key is `None`, never an error: the migration may not have started.
- A present record that does not parse, misses a field, has an unknown status, a time
  without an offset, or names another image than its key raises `RecordInvalid` with a
  message naming the key and the field. It does not count (CONTRACT: a record whose image
  differs from the key's does not count); the caller decides to log it and go on as if it
  were absent. Keys the contract does not name are ignored: such a record still counts.
- The record's shape is declared once, as the pydantic model `RecordJson`.
- Other AWS errors (access denied, no such bucket) propagate: they are not the record's
  fault and a person must see them as failed observations.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Annotated, Any, Literal

import pydantic
import pydantic_core
from botocore.exceptions import ClientError

from reconciler import model, spec, validation
from reconciler.aws.clients import Clients

MAX_RECORD_BYTES = 64 * 1024  # a record is a line of JSON; anything larger is not one
_S3_ABSENT = frozenset({"NoSuchKey", "404"})
_STATUSES = frozenset({"running", "succeeded", "failed"})


class RecordInvalid(Exception):
    """A migration record exists but cannot count; the message names its key."""


@dataclasses.dataclass(frozen=True)
class RecordKey:
    store: Literal["s3", "ssm"]
    bucket: str | None  # s3 only
    key: str  # the S3 object key or the SSM parameter name

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.store == "s3" else f"ssm:{self.key}"


def record_key(migration: spec.Migration, stack_name: str, image: str) -> RecordKey:
    """Where the record for (stack, image) lives; ValueError when check is none."""
    location = migration.location
    if migration.check == "s3" and location is not None:
        bucket, _, prefix = location.removeprefix("s3://").partition("/")
        return RecordKey("s3", bucket, _join(prefix, stack_name, f"{image}.json"))
    if migration.check == "ssm" and location is not None:
        path = location.removeprefix("ssm:")
        return RecordKey("ssm", None, "/" + _join(path, stack_name, image))
    raise ValueError(f"migration check {migration.check!r} has no record")


def _join(*parts: str) -> str:
    # "s3://b/", "s3://b/p/" and "ssm:/p" all mean the same prefix: drop empty segments.
    return "/".join(seg for part in parts for seg in part.split("/") if seg)


def read_record(clients: Clients, sp: spec.Spec, image: str) -> model.MigrationRecord | None:
    """The record for `image` of the spec's stack, None when absent; RecordInvalid if bad."""
    key = record_key(sp.migration, sp.stack_name, image)
    raw = read_s3(clients, sp, key) if key.store == "s3" else _read_ssm(clients, sp, key)
    return None if raw is None else parse_record(raw, image, str(key))


def read_s3(clients: Clients, sp: spec.Spec, key: RecordKey) -> bytes | None:
    assert key.bucket is not None
    s3 = clients.s3(sp.region, sp.role_arn)
    try:
        obj = s3.get_object(Bucket=key.bucket, Key=key.key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in _S3_ABSENT:
            return None
        raise
    body = obj["Body"]
    try:
        data = body.read(MAX_RECORD_BYTES + 1)
    finally:
        body.close()
    if len(data) > MAX_RECORD_BYTES:
        raise RecordInvalid(f"migration record {key}: larger than {MAX_RECORD_BYTES} bytes")
    return data


def _read_ssm(clients: Clients, sp: spec.Spec, key: RecordKey) -> bytes | None:
    ssm = clients.ssm(sp.region, sp.role_arn)
    try:
        param = ssm.get_parameter(Name=key.key, WithDecryption=True)
    except ssm.exceptions.ParameterNotFound:
        return None
    return param["Parameter"].get("Value", "").encode()


def parse_record(raw: bytes | str, image: str, where: str) -> model.MigrationRecord:
    """Validate one record's JSON against CONTRACT section 3 and the key's image."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordInvalid(f"migration record {where}: not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise RecordInvalid(f"migration record {where}: not a JSON object")
    try:
        record = model.MigrationRecord(**RecordJson.model_validate(data).model_dump())
    except pydantic.ValidationError as exc:
        raise RecordInvalid(f"migration record {where}: {validation.one_line(exc)}") from exc
    if record.image != image:
        raise RecordInvalid(
            f"migration record {where}: names image {record.image!r}, not {image!r}; "
            "it does not count"
        )
    return record


def _status(value: Any) -> Any:
    if isinstance(value, str) and value and value not in _STATUSES:
        raise ValueError(f"{value!r} is not running, succeeded or failed")
    return value


def _time(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise pydantic_core.PydanticCustomError("string_type", "must be a string")
    try:
        # fromisoformat in 3.11 reads "+00:00" but not "Z"; RFC 3339 allows both.
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an RFC 3339 time") from exc
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no offset (write Z or +00:00)")
    return parsed.astimezone(dt.UTC)


_Text = Annotated[str, pydantic.StringConstraints(min_length=1)]
_Time = Annotated[dt.datetime, pydantic.BeforeValidator(_time)]


class RecordJson(pydantic.BaseModel):
    """A migration record as its writer puts it (CONTRACT section 3): camelCase keys, every
    value a string, times RFC 3339 with an offset. Unknown keys are ignored."""

    model_config = pydantic.ConfigDict(extra="ignore", frozen=True, strict=True)

    image: _Text
    status: Annotated[model.RecordStatus, pydantic.BeforeValidator(_status)]
    updated_at: _Time = pydantic.Field(alias="updatedAt")
    started_at: _Time | None = pydantic.Field(None, alias="startedAt")
    progress: str | None = None
    instance_id: str | None = pydantic.Field(None, alias="instanceId")
    detail: str | None = None
    # false: the image before cannot run on the migrated schema. Missing means true, so
    # records written before this key existed keep meaning what they meant.
    rollback_safe: bool = pydantic.Field(True, alias="rollbackSafe")
