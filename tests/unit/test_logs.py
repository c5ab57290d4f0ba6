"""Log output: JSON lines with UTC timestamps, the standard library routed too, secrets gone."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from reconciler import logs

SECRET = "s3cr3t-Value-42xyz"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """configure() is process-wide; put back what the rest of the test run expects."""
    handlers = logging.getLogger().handlers[:]
    level = logging.getLogger().level
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers = handlers
    logging.getLogger().setLevel(level)
    logging.captureWarnings(False)


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def configured(fmt: str = "json", level: str = "info") -> io.StringIO:
    stream = io.StringIO()
    logs.configure(fmt, level=level, stream=stream)  # type: ignore[arg-type]
    return stream


def test_json_lines_carry_event_level_bound_values_and_utc_timestamp() -> None:
    stream = configured()
    logs.get(stack="api").info("rollout started", image="ami-1")
    [entry] = json_lines(stream)
    assert entry["event"] == "rollout started"
    assert entry["level"] == "info"
    assert (entry["stack"], entry["image"]) == ("api", "ami-1")
    stamp = dt.datetime.fromisoformat(entry["timestamp"])
    assert stamp.utcoffset() == dt.timedelta(0)


def test_auto_writes_json_when_not_on_a_terminal() -> None:
    stream = configured("auto")
    logs.get().info("hello")
    assert json_lines(stream)[0]["event"] == "hello"


def test_console_format_is_not_json_and_has_the_event() -> None:
    stream = configured("console")
    logs.get().info("hello console", image="ami-1")
    text = stream.getvalue()
    assert "hello console" in text
    assert "image=ami-1" in text
    assert not text.startswith("{")


def test_entries_below_the_level_are_dropped() -> None:
    stream = configured(level="warning")
    logs.get().info("quiet")
    logs.get().warning("loud")
    assert [e["event"] for e in json_lines(stream)] == ["loud"]


def test_standard_library_loggers_come_out_as_json_too() -> None:
    stream = configured()
    logging.getLogger("botocore.thing").warning("retrying %s", "DescribeStacks")
    [entry] = json_lines(stream)
    assert entry["event"] == "retrying DescribeStacks"
    assert entry["level"] == "warning"
    assert entry["logger"] == "botocore.thing"
    assert "timestamp" in entry


def test_module_level_logger_made_before_configure_follows_it() -> None:
    early = logs.get(component="early")
    stream = configured()
    early.info("after")
    assert json_lines(stream)[0]["component"] == "early"


@pytest.mark.parametrize(
    "key", ["token", "github_token", "webhookSecret", "password", "Authorization", "signature"]
)
def test_values_of_secret_named_keys_are_redacted(key: str) -> None:
    stream = configured()
    logs.get().info("configured", **{key: SECRET})
    out = stream.getvalue()
    assert SECRET not in out
    assert json_lines(stream)[0][key] == "***"


def test_secrets_nested_in_mappings_and_lists_are_redacted() -> None:
    stream = configured()
    logs.get().info("request", headers={"Authorization": f"Bearer {SECRET}"}, urls=[
        f"https://bot:{SECRET}@github.com/org/repo.git"
    ])  # fmt: skip
    entry = json_lines(stream)[0]
    assert SECRET not in stream.getvalue()
    assert entry["headers"] == {"Authorization": "***"}
    assert entry["urls"] == ["https://***@github.com/org/repo.git"]


def test_url_credentials_query_secrets_and_bearer_tokens_in_text_are_redacted() -> None:
    stream = configured()
    logs.get().warning(
        f"fetch https://x-access-token:{SECRET}@github.com/o/r failed",
        url=f"https://bucket.s3.amazonaws.com/k?X-Amz-Signature={SECRET}&x=1",
        hook=f"http://host/hooks/git?token={SECRET}",
        header=f"sent Bearer {SECRET}",
    )
    entry = json_lines(stream)[0]
    assert SECRET not in stream.getvalue()
    assert entry["event"] == "fetch https://***@github.com/o/r failed"
    assert entry["url"] == "https://bucket.s3.amazonaws.com/k?X-Amz-Signature=***&x=1"
    assert entry["hook"] == "http://host/hooks/git?token=***"
    assert entry["header"] == "sent Bearer ***"


def test_standard_library_messages_are_redacted() -> None:
    stream = configured()
    logging.getLogger("git").error("cloning https://u:%s@example.com/r.git", SECRET)
    assert SECRET not in stream.getvalue()


def test_tracebacks_are_redacted() -> None:
    stream = configured()
    try:
        raise RuntimeError(f"could not reach https://u:{SECRET}@example.com")
    except RuntimeError:
        logs.get().exception("fetch failed")
    entry = json_lines(stream)[0]
    assert SECRET not in stream.getvalue()
    assert "RuntimeError" in entry["exception"]


def test_whether_a_secret_is_set_is_still_logged() -> None:
    """Booleans and None say a secret is configured or not, which is worth seeing."""
    stream = configured()
    logs.get().info("http", webhook_secret=False, token=None)
    entry = json_lines(stream)[0]
    assert (entry["webhook_secret"], entry["token"]) == (False, None)


def test_ordinary_text_is_left_alone() -> None:
    text = "Basic auth is off; ssh to git.example.com; see https://example.com/a?b=c"
    assert logs.redact_text(text) == text


def test_unknown_format_and_level_are_refused() -> None:
    with pytest.raises(ValueError, match="format"):
        logs.configure("xml", stream=io.StringIO())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="level"):
        logs.configure("json", level="loud", stream=io.StringIO())
