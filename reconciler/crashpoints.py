"""Named crash points: a test facility that lets a harness kill the process at an exact place.

The daemon calls `hit("<where>.before")` / `hit("<where>.after")` around every AWS call,
every store write and every git command. Nothing happens unless the environment variable
`RECONCILER_CRASHPOINT` is set when this module is imported:

- `trace:/path/file` appends the name of every point hit to the file, one per line, flushed
  at once, so a harness can enumerate every point a run goes through (even one that dies).
- `kill:<point>#<n>` sends SIGKILL to this very process at the n-th hit of `<point>` (n from
  1): no `finally`, no atexit, no flush runs, exactly as when the machine or the OOM killer
  ends the daemon.

The variable is read once, at import: with it unset, `hit` is one comparison, and callers
that would pay for more (boto3 event hooks) ask `ACTIVE` first. It is not an operator
option: tests/crash/ uses it, and docs/reliability.md reports what it found.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "RECONCILER_CRASHPOINT"

_lock = threading.Lock()  # the daemon's worker threads may hit points at once
_counts: dict[str, int] = {}


def _parse(value: str) -> tuple[str | None, str | None, int]:
    """(trace file, point to kill at, occurrence) from the variable's value."""
    mode, _, arg = value.partition(":")
    if mode == "trace" and arg:
        return arg, None, 0
    if mode == "kill" and arg:
        point, _, nth = arg.rpartition("#")
        if point and nth.isdigit() and int(nth) >= 1:
            return None, point, int(nth)
    raise ValueError(f"{ENV}={value!r}: expected trace:<file> or kill:<point>#<n>")


_TRACE, _KILL, _NTH = _parse(os.environ[ENV]) if os.environ.get(ENV) else (None, None, 0)
ACTIVE = _TRACE is not None or _KILL is not None


def hit(point: str) -> None:
    """Pass the named point: record it (trace) or die at it (kill); nothing when inactive."""
    if not ACTIVE:
        return
    with _lock:
        if _TRACE is not None:
            # Opened per hit and flushed by the close: a later kill must not lose a line.
            with open(_TRACE, "a", encoding="utf-8") as out:  # noqa: PTH123 (hot, simple)
                out.write(point + "\n")
        if point == _KILL:
            _counts[point] = _counts.get(point, 0) + 1
            if _counts[point] == _NTH:
                os.kill(os.getpid(), signal.SIGKILL)
