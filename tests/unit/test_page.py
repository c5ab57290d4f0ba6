"""The status page (`GET /`, `GET /stacks/NAME`): what it shows, and that data stays text."""

from __future__ import annotations

import copy
import html.parser
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from reconciler import model, page
from reconciler import status as view
from reconciler.model import Phase
from reconciler.server import Server
from tests.unit import plannerkit
from tests.unit.plannerkit import NEW, OLD, REV
from tests.unit.test_server import FakeController, Reply, call, serving

NOW = "2026-12-01 06:00:00 UTC"
SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(2)">'
QUOTE = "\"'><svg onload=alert(3)>"
HOSTILE = (SCRIPT, IMG, QUOTE)


def real_status(**changes: Any) -> dict[str, Any]:
    """The JSON the daemon really serves for a stack migrating to NEW, with `changes` on top."""
    params = plannerkit.params(api=OLD, mig=NEW)
    stack = model.StackView("UPDATE_COMPLETE", params, plannerkit.T0, None)
    status = view.StackStatus(
        "biglearn-api",
        "deploy-specs/biglearn-api.yaml",
        REV,
        plannerkit.deployment(),
        phase=Phase.MIGRATING,
        message="waiting for the migration record",
        observed=model.Observed(stack=stack),
        last_transition=plannerkit.T0,
    )
    shown = status.to_json()
    shown["migration"] = {"status": "running", "progress": "3/4", "updatedAt": "2026-12-01T06Z"}
    shown.update(changes)
    return shown


HISTORY = [
    {
        "id": 1,
        "image": NEW,
        "fromImage": OLD,
        "revision": REV,
        "startedAt": "2026-12-01T05:00:00Z",
        "phase1StartedAt": "2026-12-01T05:00:01Z",
        "finishedAt": "2026-12-01T05:03:00Z",
        "result": "failed",
        "reason": "migration failed",
    }
]
FLEET = {
    "name": "api",
    "file": "deploy-specs/fleets/api.yaml",
    "stale": False,
    "halted": True,
    "halt": {"reason": "budget spent: canary-1 failed", "at": "2026-12-01T05:04:00Z", "by": None},
    "failureBudget": 0,
    "failed": ["canary-1"],
    "inFlight": ["web-2"],
    "steps": [
        {
            "step": 1,
            "maxConcurrent": 1,
            "members": ["canary-1"],
            "inFlight": [],
            "failed": ["canary-1"],
            "done": [],
        },
        {
            "step": 2,
            "maxConcurrent": 2,
            "members": ["web-2", "web-3"],
            "inFlight": ["web-2"],
            "failed": [],
            "done": ["web-3"],
        },
    ],
}


class Markup(html.parser.HTMLParser):
    """Every element and attribute of a page, and its text, as a browser's parser sees them."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def assert_inert(text: str) -> Markup:
    """No element or attribute that could run script, whatever the data held."""
    markup = Markup(text)
    assert not {"script", "svg", "img", "iframe", "object", "embed", "form", "button"} & set(
        markup.tags
    )
    assert [name for name, _ in markup.attributes if name.startswith("on")] == []
    assert [v for _, v in markup.attributes if v and "javascript:" in v.lower()] == []
    lowered = text.lower()
    assert "<script" not in lowered and "<img" not in lowered and "<svg" not in lowered
    return markup


# --- rendering --------------------------------------------------------------------------


def test_the_index_shows_each_stacks_phase_images_migration_and_link() -> None:
    """A row per stack: its page link, phase with its colour, desired and live image, progress."""
    text = page.index([real_status()], [], NOW)
    markup = assert_inert(text)
    assert ("href", "/stacks/biglearn-api") in markup.attributes
    assert '<span class="phase busy">Migrating</span>' in text
    assert NEW in markup.all_text and OLD in markup.all_text
    assert "running 3/4" in markup.all_text
    assert '<progress max="4" value="3">' in text
    assert "waiting for the migration record" in markup.all_text
    assert 'http-equiv="refresh"' in text and 'name="viewport"' in text


@pytest.mark.parametrize("hostile", HOSTILE)
def test_markup_in_any_field_of_a_stack_is_shown_as_text(hostile: str) -> None:
    """A pause reason, message, error, drift, spec name, image, failure code, time or region
    holding HTML appears as those characters, never as markup."""
    status = real_status(
        name=f"api{hostile}",
        message=f"migration failed: {hostile}",
        lastError=hostile,
        region=hostile,
        reason=hostile,
        phase=hostile,
        lastTransitionTime=hostile,
        paused={"reason": hostile, "until": hostile, "source": hostile},
        failures={"count": 2, "code": hostile, "nextRetryAt": hostile},
        migration={"status": hostile, "progress": hostile, "updatedAt": hostile},
        drift=[{"group": hostile, "field": "desiredCapacity", "expected": "2", "actual": hostile}],
        desired={"image": hostile, "capacity": {"api": hostile, "migration": 1}},
        live={"status": hostile, "image": hostile, "parameters": {hostile: hostile}},
    )
    for text in (page.index([status], [], NOW), page.stack_page(status, [], NOW)):
        markup = assert_inert(text)
        assert hostile in markup.all_text  # shown, as text


@pytest.mark.parametrize("hostile", HOSTILE)
def test_markup_in_a_history_record_or_a_fleet_is_shown_as_text(hostile: str) -> None:
    """A history record's reason (a migration record's detail ends up there) and every field
    of a fleet stay text, and a field the page does not know yet is shown as text too."""
    record = {**HISTORY[0], "reason": f"migration failed: {hostile}", "detail": hostile}
    fleet = copy.deepcopy(FLEET)
    fleet.update(name=hostile, file=hostile, failed=[hostile], inFlight=[hostile])
    fleet["halt"] = {"reason": hostile, "at": hostile, "by": hostile}
    fleet["steps"][0]["members"] = [hostile]
    for text in (
        page.stack_page(real_status(), [record], NOW),
        page.index([real_status()], [fleet], NOW),
    ):
        markup = assert_inert(text)
        assert hostile in markup.all_text


def test_a_stack_name_is_quoted_in_its_link() -> None:
    """A name with a slash, a question mark or a quote links to its own page, not elsewhere."""
    markup = assert_inert(page.index([real_status(name='a/b?c"d')], [], NOW))
    assert ("href", "/stacks/a%2Fb%3Fc%22d") in markup.attributes


def test_the_stack_page_shows_the_status_and_every_history_record() -> None:
    """Status fields (revision, live parameters, pause) and the history's rows and steps."""
    paused = {"reason": "incident 42", "until": None, "source": "runtime"}
    text = page.stack_page(real_status(paused=paused), HISTORY, NOW)
    markup = assert_inert(text)
    assert REV in markup.all_text
    assert "paused: incident 42" in markup.all_text
    assert "LcImageId = " in markup.all_text
    assert markup.tags.count("tr") == 1 + len(HISTORY)  # the heading and one row each
    assert '<span class="phase bad">failed</span>' in text
    assert "migration started: 2026-12-01 05:00:01Z" in markup.all_text


def test_the_index_shows_a_fleets_halt_budget_and_steps() -> None:
    """The fleets section: halted with its reason, failures against the budget, each step."""
    markup = assert_inert(page.index([real_status()], [FLEET], NOW))
    shown = markup.all_text
    assert "Fleets" in shown
    assert "budget spent: canary-1 failed" in shown
    assert "1 of budget 0" in shown
    assert "step 2 (at most 2 at once): 1/2 done; web-2, web-3" in shown
    assert ("href", "/stacks/web-2") in markup.attributes


def test_the_index_says_so_when_there_is_nothing_to_show() -> None:
    """No stacks: a sentence, not an empty table; no fleets: no fleets section."""
    shown = Markup(page.index([], [], NOW)).all_text
    assert "No stack is managed" in shown
    assert "Fleets" not in shown


def test_the_policy_allows_no_script_and_only_the_pages_own_stylesheet() -> None:
    """Content-Security-Policy: nothing by default, the one stylesheet by hash, no framing."""
    policy = dict(page.HEADERS)["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "script-src" not in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert f"<style>{page.CSS}</style>" in page.index([], [], NOW)


# --- through the real server ------------------------------------------------------------


class PageController(FakeController):
    """The fake controller, answering with a real stack's JSON, its history and a fleet."""

    def __init__(self, status: dict[str, Any]) -> None:
        super().__init__()
        self.status = status

    def stacks(self) -> list[dict[str, Any]]:
        return [self.status]

    def stack(self, name: str) -> dict[str, Any] | None:
        return self.status if name == self.status["name"] else None

    def history(self, name: str) -> list[dict[str, Any]] | None:
        return HISTORY if name == self.status["name"] else None

    def fleets(self) -> list[dict[str, Any]]:
        return [FLEET]


@contextmanager
def page_server(status: dict[str, Any]) -> Iterator[Server]:
    with serving(PageController(status)) as server:
        yield server


def assert_page_headers(reply: Reply) -> None:
    assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
    assert reply.headers["Content-Security-Policy"] == page.CONTENT_SECURITY_POLICY
    assert reply.headers["X-Content-Type-Options"] == "nosniff"


def test_get_slash_serves_the_index_as_html_with_its_policy() -> None:
    """`GET /` over HTTP: 200, HTML, the CSP and nosniff, the stack and the fleet."""
    paused = {"reason": SCRIPT, "until": None, "source": "runtime"}
    with page_server(real_status(paused=paused)) as server:
        reply = call(server, "GET", "/")
    assert reply.status == 200
    assert_page_headers(reply)
    markup = assert_inert(reply.body.decode())
    assert SCRIPT in markup.all_text
    assert "biglearn-api" in markup.all_text and "budget spent" in markup.all_text


def test_get_a_stacks_page_serves_its_status_and_history() -> None:
    """`GET /stacks/NAME`: 200 with the history; the name is unquoted as the API's is."""
    with page_server(real_status(name="a b")) as server:
        reply = call(server, "GET", "/stacks/a%20b")
    assert reply.status == 200
    assert_page_headers(reply)
    shown = assert_inert(reply.body.decode()).all_text
    assert "a b" in shown and "migration failed" in shown


def test_an_unknown_stacks_page_is_an_html_404_naming_it_as_text() -> None:
    """404, HTML with the same policy, the asked-for name escaped."""
    with page_server(real_status()) as server:
        reply = call(server, "GET", "/stacks/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert reply.status == 404
    assert_page_headers(reply)
    assert SCRIPT in assert_inert(reply.body.decode()).all_text


def test_the_page_offers_no_control_and_refuses_other_methods() -> None:
    """Read-only: no form or button on the page, and POST to it is 405."""
    with page_server(real_status()) as server:
        text = call(server, "GET", "/").body.decode().lower()
        assert call(server, "POST", "/").status == 405
        assert call(server, "POST", "/stacks/biglearn-api").status == 405
    assert "<form" not in text and "<button" not in text and "token" not in text
