"""Logging: structlog for our code, the standard library's loggers routed through it.

Rules of this file:
- One call, `configure()`, at start-up decides the format for the whole process: JSON lines
  for machines (not a terminal), a readable console for people (a terminal).
- Timestamps are ISO 8601 in UTC, whatever the host's zone.
- Secrets never reach the output: keys that name a secret, credentials in URLs, secret
  query values and bearer tokens are replaced by "***" before any renderer sees them,
  tracebacks included.
"""

from __future__ import annotations

import io
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO, cast

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

REDACTED = "***"

# Key names that hold secrets, as a substring: `github_token`, `webhookSecret`,
# `X-Hub-Signature-256`, `db_password`, `Authorization`, `aws_secret_access_key`.
_SECRET_NAME = r"token|secret|passw(?:or)?d|authorization|signature|credential|api[_-]?key"  # noqa: S105 -- names, not a password
_SECRET_KEY_RE = re.compile(_SECRET_NAME, re.IGNORECASE)
# `scheme://user:pass@host`: the whole userinfo goes, since a user name alone can be a token
# (`https://ghp_...@github.com`).
_URL_USERINFO_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#@\s]+@")
# `?token=...`, `&X-Amz-Signature=...` (presigned URLs), `&sig=...`: the value goes, the
# name stays so the entry still says what was there.
_QUERY_SECRET_RE = re.compile(
    rf"(?P<name>[?&;](?:[^=&#\s]*(?:{_SECRET_NAME})[^=&#\s]*|sig)=)[^&#\s]+", re.IGNORECASE
)
# An Authorization header's value quoted in a message; 8 characters or more, so that prose
# such as "Basic auth" survives.
_BEARER_RE = re.compile(r"(?P<scheme>\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]{8,}")

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL}  # fmt: skip


def redact_text(text: str) -> str:
    """`text` without URL credentials, secret query values and bearer tokens."""
    text = _URL_USERINFO_RE.sub(rf"\g<scheme>{REDACTED}@", text)
    text = _QUERY_SECRET_RE.sub(rf"\g<name>{REDACTED}", text)
    return _BEARER_RE.sub(rf"\g<scheme>{REDACTED}", text)


def _redact_value(key: str, value: Any) -> Any:
    # Booleans and None say whether a secret is set, which is worth logging; not what it is.
    if _SECRET_KEY_RE.search(key) and value is not None and not isinstance(value, bool):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value("", v) for v in value]
    return value


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: replace every secret in the event by "***"."""
    return {key: _redact_value(key, value) for key, value in event_dict.items()}


def _shared_processors() -> list[Processor]:
    """What every entry goes through, ours and the standard library's alike."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        # Tracebacks become text before redaction so their secrets are redacted too.
        structlog.processors.format_exc_info,
        redact,
    ]


class _CurrentStderr(io.TextIOBase):
    """sys.stderr as it is at each write."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def _renderer(fmt: Literal["json", "console", "auto"], stream: TextIO) -> Processor:
    on_terminal = stream.isatty()
    if fmt == "console" or (fmt == "auto" and on_terminal):
        return structlog.dev.ConsoleRenderer(colors=on_terminal)
    if fmt in ("json", "auto"):
        return structlog.processors.JSONRenderer(default=str)
    raise ValueError(f"log format must be json, console or auto, not {fmt!r}")


def _level(level: str) -> int:
    try:
        return _LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"log level must be one of {', '.join(_LEVELS)}, not {level!r}") from None


def _route_stdlib(renderer: Processor, level: int, stream: TextIO) -> None:
    """Send the standard library's loggers (boto3, GitPython, ...) through our processors."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            # Their logger's name says which library spoke; ours say it with bound values.
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *_shared_processors()],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]  # replaces, so configuring twice does not print twice
    root.setLevel(level)
    logging.captureWarnings(True)


def configure(
    fmt: Literal["json", "console", "auto"], level: str = "info", stream: TextIO | None = None
) -> None:
    """Set up logging for the whole process; call once at start-up (tests may call again).

    `stream` defaults to whatever sys.stderr is at each write, not at import or at this
    call, so a redirected stderr (pytest's capsys, contextlib.redirect_stderr) receives the
    lines and one that was closed since is never written to."""
    stream = stream if stream is not None else cast(TextIO, _CurrentStderr())
    renderer = _renderer(fmt, stream)
    threshold = _level(level)
    structlog.configure(
        processors=[*_shared_processors(), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(stream),
        # Not cached: module-level loggers made before configure() must follow it.
        cache_logger_on_first_use=False,
    )
    _route_stdlib(renderer, threshold, stream)


def get(**bound: Any) -> FilteringBoundLogger:
    """A logger with `bound` key-values on every entry it writes."""
    # Initial values rather than bind(): the proxy stays lazy, so a module-level logger
    # follows a configure() that runs after the import.
    return cast(FilteringBoundLogger, structlog.get_logger(**bound))
