"""The status page (`GET /`, `GET /stacks/NAME`): the status JSON, rendered as HTML.

Rules of this file:
- Pure rendering: dicts in (the very ones `/api/v1/stacks`, `/api/v1/stacks/NAME/history`
  and `/api/v1/fleets` answer), a string out. No I/O, no clock (the caller passes the time),
  nothing but the standard library. The page shows what the JSON shows and nothing more:
  no token, no control, no form.
- Every value from the data goes through `_text` (`html.escape`, quotes too) and every URL
  through `_href`; nothing from the data is written anywhere else. A spec name, a message, a
  pause reason or a migration record's detail is text on the page, never markup.
- No script at all, and one fixed stylesheet: the Content-Security-Policy allows no script
  and only that stylesheet (by its hash), so even a mistake in escaping could not run code
  or restyle the page. No asset comes from outside the daemon.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

CONTENT_TYPE = "text/html; charset=utf-8"
REFRESH_SECONDS = 5  # a rollout step is seconds to minutes: often enough to follow one

# Phases as CONTRACT section 5 names them, with the colour class each is shown in. A phase
# this table does not know (added later) is shown in the neutral colour.
PHASE_CLASSES = {
    "InSync": "ok",
    "Paused": "paused",
    "Migrating": "busy",
    "AwaitingApproval": "held",
    "UpdatingApi": "busy",
    "Verifying": "busy",
    "Waiting": "held",
    "Failed": "bad",
    "Blocked": "bad",
}

CSS = """
:root{color-scheme:light dark;--fg:#1b1f24;--muted:#5b636e;--bg:#f6f7f9;--card:#fff;
--line:#d9dde3;--ok:#1a7f37;--busy:#0b5cad;--held:#9a6700;--bad:#c62828;--paused:#6e40c9}
@media (prefers-color-scheme:dark){:root{--fg:#e6e9ee;--muted:#9aa4b1;--bg:#0f1216;
--card:#171b21;--line:#2c333c;--ok:#3fb950;--busy:#58a6ff;--held:#d29922;--bad:#ff6b6b;
--paused:#b392f0}}
*{box-sizing:border-box}
body{margin:0;padding:1rem;font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;
color:var(--fg);background:var(--bg)}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:.25rem 1rem;margin-bottom:1rem}
h1{font-size:1.3rem;margin:0}h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
a{color:var(--busy)}
.muted,.none{color:var(--muted)}.small{font-size:.85rem}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85rem}
table{width:100%;border-collapse:collapse;background:var(--card);border:1px solid var(--line);
border-radius:8px}
th,td{text-align:left;vertical-align:top;padding:.45rem .6rem;border-bottom:1px solid var(--line)}
th{font-size:.8rem;text-transform:uppercase;letter-spacing:.03em;color:var(--muted)}
tr:last-child td{border-bottom:0}
td{overflow-wrap:break-word}
tr.stack td:first-child a{font-weight:600;white-space:nowrap}
.phase{display:inline-block;padding:.1rem .5rem;border-radius:999px;color:#fff;font-weight:600;
font-size:.85rem;background:var(--muted);white-space:nowrap}
.phase.ok{background:var(--ok)}.phase.busy{background:var(--busy)}
.phase.held{background:var(--held)}.phase.bad{background:var(--bad)}
.phase.paused{background:var(--paused)}
.warn{color:var(--bad);font-weight:600}
progress{width:6rem;vertical-align:middle}
td code{white-space:nowrap}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;margin:0;padding:.8rem;
background:var(--card);border:1px solid var(--line);border-radius:8px}
dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere}
.scroll{overflow-x:auto}
ul.plain{margin:0;padding-left:1.1rem}
@media (max-width:760px){
body{padding:.6rem}
table.cards,table.cards tbody,table.cards tr,table.cards td{display:block;width:100%}
table.cards{border:0;background:none}
table.cards thead{display:none}
table.cards tr{background:var(--card);border:1px solid var(--line);border-radius:8px;
margin-bottom:.7rem;padding:.3rem 0}
table.cards td{display:grid;grid-template-columns:7.5rem 1fr;gap:.5rem;border:0;
padding:.25rem .7rem}
table.cards td::before{content:attr(data-label);color:var(--muted);font-size:.8rem}
dl{grid-template-columns:1fr}dt{margin-top:.3rem}
}
"""

_CSS_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
# Sent with every page: what may run (nothing), what may frame it (nothing), no referrer
# leaking a stack name to a link target. X-Content-Type-Options comes with every response.
HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)

# A history record's times, in rollout order, shown under "Steps" with these labels; with
# _HISTORY_COLUMNS they are the fields this file knows. Any other field that is set (one
# added to the JSON later) is still shown under "Steps", by its JSON name.
_HISTORY_TIMES = (
    ("phase1StartedAt", "migration started"),
    ("migratedAt", "migrated"),
    ("approvedAt", "approved"),
    ("scalingSuspendedAt", "scaling suspended"),
    ("switchStartedAt", "switch started"),
    ("switchedAt", "switched"),
    ("scalingResumedAt", "scaling resumed"),
    ("finishedAt", "finished"),
)
_HISTORY_COLUMNS = ("id", "startedAt", "fromImage", "image", "revision", "result", "reason")


# --- the pages --------------------------------------------------------------------------


def index(
    stacks: Sequence[Mapping[str, Any]], fleets: Sequence[Mapping[str, Any]], now: str
) -> str:
    """`GET /`: every stack, then every fleet."""
    body = [
        _header("reconciler", _text(f"{len(stacks)} stack(s), {len(fleets)} fleet(s)"), now),
        "<h2>Stacks</h2>",
        _stacks_table(stacks) if stacks else '<p class="muted">No stack is managed (yet).</p>',
    ]
    if fleets:
        body += ["<h2>Fleets</h2>", _fleets_table(fleets)]
    return _document("reconciler: status", body)


def stack_page(status: Mapping[str, Any], history: Sequence[Mapping[str, Any]], now: str) -> str:
    """`GET /stacks/NAME`: one stack's status and its rollout history."""
    name = str(status.get("name", ""))
    body = [
        _header(name, _HOME, now),
        "<h2>Status</h2>",
        _summary_list(status),
        "<h2>History</h2>",
        _history_table(history) if history else '<p class="muted">No rollout yet.</p>',
        "<h2>Details</h2>",
        _details_list(status),
    ]
    return _document(f"reconciler: {name}", body)


def not_found(name: str, now: str) -> str:
    """The answer for a stack the daemon does not manage."""
    body = [
        _header("Not found", _HOME, now),
        f"<p>No stack named <code>{_text(name)}</code> is managed here.</p>",
    ]
    return _document("reconciler: not found", body, refresh=False)


# --- the frame --------------------------------------------------------------------------


def _document(title: str, body: Iterable[str], refresh: bool = True) -> str:
    meta_refresh = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if refresh else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{meta_refresh}<title>{_text(title)}</title><style>{CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


_HOME = '<a href="/">all stacks</a>'


def _header(title: str, subtitle: str, now: str) -> str:
    """The title line; `subtitle` is markup, already escaped by the caller."""
    return (
        f"<header><h1>{_text(title)}</h1><span>{subtitle}</span>"
        f'<span class="muted small">as of {_text(now)}, refreshing every {REFRESH_SECONDS} s'
        "</span></header>"
    )


# --- the index --------------------------------------------------------------------------

_STACK_COLUMNS = (
    "Name",
    "Phase",
    "Image",
    "Migration",
    "Last transition",
    "Failures",
    "Paused",
    "Message",
)


def _stacks_table(stacks: Sequence[Mapping[str, Any]]) -> str:
    rows = "".join(_stack_row(s) for s in stacks)
    return _table(_STACK_COLUMNS, rows, "stacks")


def _stack_row(s: Mapping[str, Any]) -> str:
    name = str(s.get("name", ""))
    cells = (
        f'<a href="{_href(name)}">{_text(name)}</a><br>'
        f"{_small(s.get('stackName'))} {_small(s.get('region'))}",
        _phase(s),
        f"{_small('desired')} {_mono(_get(s, 'desired', 'image'))}<br>{_small('live')} {_live(s)}",
        _migration(s.get("migration")),
        _time(s.get("lastTransitionTime")),
        _failures(s.get("failures")),
        _paused(s.get("paused")),
        _message(s),
    )
    return _row(_STACK_COLUMNS, cells, css="stack")


def _phase(s: Mapping[str, Any]) -> str:
    phase = str(s.get("phase") or "-")
    css = PHASE_CLASSES.get(phase, "unknown")
    reason = s.get("reason")
    why = f"<br>{_small(reason)}" if reason else ""
    return f'<span class="phase {css}">{_text(phase)}</span>{why}'


def _live(s: Mapping[str, Any]) -> str:
    live = s.get("live") or {}
    image = live.get("image")
    differs = image is not None and image != _get(s, "desired", "image")
    mark = ' <span class="warn" title="differs from desired">&ne;</span>' if differs else ""
    status = f'<span class="muted small">{_breakable(live.get("status"))}</span>'
    return f"{_mono(image)}{mark}<br>{status}"


def _migration(m: Any) -> str:
    if not isinstance(m, Mapping) or not m.get("status"):
        return _none()
    progress = m.get("progress")
    bar = _progress(progress)
    done = f" {_text(progress)}" if progress else ""
    updated = m.get("updatedAt")
    when = f'<br><span class="muted small">{_time(updated)}</span>' if updated else ""
    return f"{_text(m.get('status'))}{done}{bar}{when}"


def _progress(progress: Any) -> str:
    """A bar for a `k/N` progress; nothing for any other text (the text is shown anyway)."""
    k, slash, n = str(progress or "").partition("/")
    if not slash or not k.strip().isdigit() or not n.strip().isdigit() or int(n) <= 0:
        return ""
    value, top = min(int(k), int(n)), int(n)
    return f'<br><progress max="{top}" value="{value}">{value}/{top}</progress>'


def _failures(f: Any) -> str:
    if not isinstance(f, Mapping) or not f.get("count"):
        return _none("0")
    code = f" {_mono(f.get('code'))}" if f.get("code") else ""
    at = f.get("nextRetryAt")
    retry = f'<br><span class="muted small">retry at {_time(at)}</span>' if at else ""
    return f'<span class="warn">{_text(f.get("count"))}</span>{code}{retry}'


def _paused(p: Any) -> str:
    if not isinstance(p, Mapping):
        return _none("no")
    until = (
        f'<br><span class="muted small">until {_time(p["until"])}</span>' if p.get("until") else ""
    )
    source = f"<br>{_small('by ' + str(p.get('source')))}" if p.get("source") else ""
    return f'<span class="warn">paused</span>: {_text(p.get("reason"))}{until}{source}'


def _message(s: Mapping[str, Any]) -> str:
    parts = [_text(s.get("message"))]
    if s.get("lastError"):
        parts.append(f'<br><span class="warn">error:</span> {_text(s["lastError"])}')
    drift = s.get("drift")
    if drift:
        parts.append(f'<br><span class="warn">drift:</span> {_drift(drift)}')
    if s.get("staleSpec"):
        parts.append(f"<br>{_small('spec file invalid: the last valid version is in force')}")
    return "".join(parts)


def _drift(drift: Any) -> str:
    if not isinstance(drift, list):
        return _text(drift)
    return "; ".join(
        ", ".join(f"{_text(k)}: {_text(v)}" for k, v in d.items())
        if isinstance(d, Mapping)
        else _text(d)
        for d in drift
    )


# --- fleets -----------------------------------------------------------------------------

_FLEET_COLUMNS = ("Fleet", "State", "Failures", "In flight", "Steps")


def _fleets_table(fleets: Sequence[Mapping[str, Any]]) -> str:
    return _table(_FLEET_COLUMNS, "".join(_fleet_row(f) for f in fleets), "fleets")


def _fleet_row(f: Mapping[str, Any]) -> str:
    halt = f.get("halt")
    if f.get("halted") and isinstance(halt, Mapping):
        by = f" by {halt.get('by')}" if halt.get("by") else ""
        when = f"at {halt.get('at')}{by}"
        state = (
            f'<span class="phase bad">halted</span> {_text(halt.get("reason"))}<br>{_small(when)}'
        )
    else:
        state = '<span class="phase ok">running</span>'
    if f.get("stale"):
        state += f"<br>{_small('file invalid or removed: the last valid version is in force')}"
    failed = f.get("failed") or []
    cells = (
        f"{_text(f.get('name'))}<br>{_small(f.get('file'))}",
        state,
        f"{_text(len(failed))} of budget {_text(f.get('failureBudget'))}"
        + (f"<br>{_names(failed)}" if failed else ""),
        _names(f.get("inFlight") or []) or _none(),
        _steps(f.get("steps") or []),
    )
    return _row(_FLEET_COLUMNS, cells, css="fleet")


def _steps(steps: Sequence[Any]) -> str:
    items = []
    for step in steps:
        if not isinstance(step, Mapping):
            continue
        members = step.get("members") or []
        done = step.get("done") or []
        items.append(
            f"<li>step {_text(step.get('step'))} (at most {_text(step.get('maxConcurrent'))} at "
            f"once): {_text(len(done))}/{_text(len(members))} done; {_names(members)}</li>"
        )
    return f'<ul class="plain">{"".join(items)}</ul>' if items else _none()


def _names(names: Sequence[Any]) -> str:
    """Stack names, each a link to its page."""
    return ", ".join(f'<a href="{_href(str(n))}">{_text(n)}</a>' for n in names)


# --- one stack --------------------------------------------------------------------------


def _summary_list(s: Mapping[str, Any]) -> str:
    """What a person looks for first: where the stack stands and what holds it."""
    return _dl(
        ("Phase", _phase(s)),
        ("Message", _message(s)),
        ("Desired image", _mono(_get(s, "desired", "image"))),
        ("Live image", _live(s)),
        ("Migration", _migration(s.get("migration"))),
        ("Last transition", _time(s.get("lastTransitionTime"))),
        ("Failures", _failures(s.get("failures"))),
        ("Paused", _paused(s.get("paused"))),
        ("Rollout", _rollout(s.get("rollout"))),
    )


def _details_list(s: Mapping[str, Any]) -> str:
    """The rest of the status: where the spec and the stack are, every live parameter."""
    live = s.get("live") or {}
    return _dl(
        ("Stack", f"{_text(s.get('stackName'))} in {_text(s.get('region'))}"),
        ("Spec file", _mono(s.get("file"))),
        ("Revision", _mono(s.get("revision"))),
        ("Desired capacity", _pairs(_get(s, "desired", "capacity") or {})),
        ("Live parameters", _pairs(live.get("parameters") or {})),
    )


def _dl(*items: tuple[str, str]) -> str:
    return "<dl>" + "".join(f"<dt>{_text(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def _rollout(r: Any) -> str:
    if not isinstance(r, Mapping):
        return _none()
    result = r.get("result") or "in progress"
    return (
        f"{_mono(r.get('fromImage'))} &rarr; {_mono(r.get('image'))}: {_text(result)}"
        f'<br><span class="muted small">started {_time(r.get("startedAt"))}</span>'
    )


_HISTORY_HEADINGS = ("#", "Started", "From", "To", "Revision", "Result", "Reason", "Steps")


def _history_table(history: Sequence[Mapping[str, Any]]) -> str:
    return _table(_HISTORY_HEADINGS, "".join(_history_row(r) for r in history), "history")


def _history_row(r: Mapping[str, Any]) -> str:
    known = {k for k, _ in _HISTORY_TIMES} | set(_HISTORY_COLUMNS)
    steps = [(label, r.get(k)) for k, label in _HISTORY_TIMES if r.get(k)]
    steps += [(k, v) for k, v in r.items() if k not in known and v not in (None, "", [], {})]
    result = r.get("result") or "in progress"
    css = {"succeeded": "ok", "failed": "bad"}.get(str(r.get("result")), "busy")
    cells = (
        _text(r.get("id")),
        _time(r.get("startedAt")),
        _mono(r.get("fromImage")),
        _mono(r.get("image")),
        _mono(str(r.get("revision") or "")[:12] or None),
        f'<span class="phase {css}">{_text(result)}</span>',
        _text(r.get("reason")) if r.get("reason") else _none(),
        "".join(f"{_text(label)}: {_time(v)}<br>" for label, v in steps) or _none(),
    )
    return _row(_HISTORY_HEADINGS, cells, css="record")


# --- cells ------------------------------------------------------------------------------


def _table(headings: Sequence[str], rows: str, css: str) -> str:
    head = "".join(f"<th>{_text(h)}</th>" for h in headings)
    table = (
        f'<table class="cards {css}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
    )
    return f'<div class="scroll">{table}</div>'


def _row(headings: Sequence[str], cells: Sequence[str], css: str) -> str:
    """A row whose cells carry their heading, shown beside each value on a phone."""
    # The cell's content in one element: on a phone the cell is a grid of label and value.
    tds = "".join(
        f'<td data-label="{_text(h)}"><div>{c}</div></td>'
        for h, c in zip(headings, cells, strict=True)
    )
    return f'<tr class="{css}">{tds}</tr>'


def _pairs(values: Mapping[str, Any]) -> str:
    if not values:
        return _none()
    return "<br>".join(f"{_text(k)} = {_mono(v)}" for k, v in sorted(values.items()))


def _get(s: Mapping[str, Any], key: str, sub: str) -> Any:
    inner = s.get(key)
    return inner.get(sub) if isinstance(inner, Mapping) else None


def _time(value: Any) -> str:
    """A status time, shown to the second; the exact value is the element's `datetime`."""
    if not value:
        return _none()
    shown = _SECONDS.sub(r"\1 \2Z", str(value))
    return f'<time datetime="{_text(value)}">{_text(shown)}</time>'


_SECONDS = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.\d+)?Z$")


def _breakable(value: Any) -> str:
    """Escaped text that may wrap after an underscore (UPDATE_COMPLETE_CLEANUP_IN_PROGRESS)."""
    return _text(value).replace("_", "_<wbr>")


def _mono(value: Any) -> str:
    return f"<code>{_text(value)}</code>" if value not in (None, "") else _none()


def _small(value: Any) -> str:
    return f'<span class="muted small">{_text(value)}</span>'


def _none(text: str = "-") -> str:
    return f'<span class="none">{_text(text)}</span>'


def _text(value: Any) -> str:
    """Any value as text in HTML, quotes included (safe in content and in attributes)."""
    if value is None:
        return "-"
    return html.escape(str(value), quote=True)


def _href(name: str) -> str:
    """The page of a stack: its name quoted for a path (a slash too), then for HTML."""
    return _text("/stacks/" + urllib.parse.quote(name, safe=""))
