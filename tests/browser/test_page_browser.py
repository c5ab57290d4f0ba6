"""The status page in a real browser: headless Chromium opens it during a demo rollout.

Rules of this file:
- The rollout is the demo's own (`demo._scene`: the embedded emulator, a real git repository,
  the daemon in this process); the test plays the migration instance itself so that the
  record's `detail` can hold HTML.
- Chromium is the Debian package (`chromium`, or `chromium-browser` elsewhere); without it
  every test here is skipped, saying so. CI installs it and runs `make test-browser`.
- Every screenshot is kept under `.artifacts/browser/` (gitignored) and its path printed, so
  a person can look at what the browser showed.
- Nothing sleeps for a fixed time: each wait polls the status API against a deadline.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from reconciler.embedded import demo
from reconciler.embedded.migration import Location, now_text
from tests.unit.test_page import Markup, assert_inert

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / ".artifacts" / "browser"
SCRIPT = "<script>alert(1)</script>"
DETAIL = '<img src=x onerror="alert(2)"><b>step 3 of 4</b> failed'
DESKTOP, PHONE = "1200,800", "390,844"
TIMEOUT = 60.0  # seconds for the whole play; the happy demo converges in about 15

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no chromium or chromium-browser on PATH (Debian: apt-get install chromium); "
        "CI installs it and runs `make test-browser`",
    ),
]


class Browser:
    """Headless Chromium, one process per look, with a profile of its own."""

    def __init__(self, binary: str, profile: pathlib.Path) -> None:
        self.binary = binary
        self.profile = profile

    def _run(self, url: str, *flags: str) -> subprocess.CompletedProcess[str]:
        command = [
            self.binary,
            "--headless",
            "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--enable-logging=stderr",
            f"--user-data-dir={self.profile}",
            *flags,
            url,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"chromium exited {done.returncode}:\n{done.stderr}"
        # The page's policy allows no script and one stylesheet by hash: a refusal means the
        # page asked for something its own policy forbids (the hash no longer matching, say).
        assert "Content Security Policy" not in done.stderr, done.stderr
        return done

    def dom(self, url: str) -> str:
        """The document as the browser built it, after load, serialized."""
        return self._run(url, "--dump-dom").stdout

    def screenshot(self, url: str, name: str, size: str) -> pathlib.Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        target = ARTIFACTS / f"{name}-{size.replace(',', 'x')}.png"
        target.unlink(missing_ok=True)
        self._run(url, f"--screenshot={target}", f"--window-size={size}")
        assert target.stat().st_size > 0
        print(f"screenshot: {target}")
        return target


@pytest.fixture
def browser(tmp_path: pathlib.Path) -> Browser:
    assert CHROMIUM is not None
    return Browser(CHROMIUM, tmp_path / "chromium-profile")


@pytest.fixture
def scene(tmp_path: pathlib.Path) -> Iterator[demo.Scene]:
    """The demo's stack, spec, repository and daemon; the environment restored after."""
    saved = dict(os.environ)
    demo._isolate_from_real_aws()
    try:
        with demo._scene(tmp_path / "demo") as scene:
            yield scene
    finally:
        os.environ.clear()
        os.environ.update(saved)


def wait_for(
    scene: demo.Scene, deadline: float, what: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The stack's status once `done` holds; fails the test at the deadline."""
    while True:
        status = scene.status()
        if done(status):
            return status
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {status}"
        time.sleep(0.1)  # polling the status API, as the page's reader would


def write_record(scene: demo.Scene, status: str, progress: str, detail: str) -> None:
    """Play the migration instance: its record for the new image, as CONTRACT section 3."""
    location = Location.parse(f"s3://{demo.BUCKET}/{demo.NAME}")
    record = {
        "image": scene.new,
        "status": status,
        "progress": progress,
        "instanceId": "i-browser",
        "startedAt": now_text(),
        "updatedAt": now_text(),
        "detail": detail,
    }
    scene.emulator.client("s3").put_object(
        Bucket=demo.BUCKET,
        Key=location.key(demo.STACK, scene.new),
        Body=json.dumps(record).encode(),
        ContentType="application/json",
    )


def pause(scene: demo.Scene, reason: str) -> None:
    """`reconciler pause` through the HTTP API (the demo allows unauthenticated controls)."""
    request = urllib.request.Request(
        f"{scene.base_url}/api/v1/stacks/{demo.NAME}/pause",
        data=json.dumps({"reason": reason}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def rows(dom: str, css: str) -> int:
    """How many rows of class `css` the document has."""
    return sum(1 for name, value in Markup(dom).attributes if name == "class" and value == css)


def test_the_page_follows_a_rollout_and_shows_html_from_data_as_text(
    scene: demo.Scene, browser: Browser
) -> None:
    """During a migration the page shows the stack, its phase, both images and the progress;
    after a failed migration whose detail holds HTML and a pause whose reason is a script,
    the index and the history page show both as text, and the browser built no script."""
    deadline = time.monotonic() + TIMEOUT
    index = f"{scene.base_url}/"
    history = f"{scene.base_url}/stacks/{urllib.parse.quote(demo.NAME, safe='')}"

    demo._bump(scene, deadline)
    wait_for(scene, deadline, "phase 1", lambda s: s["reason"] == "awaiting_migration")
    write_record(scene, "running", "2/4", "2 of 4 applied")
    wait_for(scene, deadline, "progress 2/4", lambda s: s["migration"]["progress"] == "2/4")

    during = browser.dom(index)
    assert rows(during, "stack") == 1
    shown = assert_inert(during).all_text
    assert demo.NAME in shown and demo.STACK in shown
    assert "Migrating" in shown and "running 2/4" in shown
    assert scene.new in shown and scene.old in shown  # desired, and live still on the old
    browser.screenshot(index, "index-migrating", DESKTOP)
    browser.screenshot(index, "index-migrating", PHONE)

    write_record(scene, "failed", "3/4", DETAIL)
    wait_for(scene, deadline, "the failure", lambda s: s["phase"] == "Failed")
    shown = assert_inert(browser.dom(index)).all_text
    assert DETAIL in shown  # the failure message carries the record's detail, as text
    assert "Failed" in shown and "migration_failed" in shown

    pause(scene, SCRIPT)
    wait_for(scene, deadline, "the pause", lambda s: (s["paused"] or {}).get("reason") == SCRIPT)
    shown = assert_inert(browser.dom(index)).all_text
    assert SCRIPT in shown  # the pause reason, as text
    browser.screenshot(index, "index-failed-paused", DESKTOP)
    browser.screenshot(index, "index-failed-paused", PHONE)

    page = browser.dom(history)
    assert rows(page, "record") == 1
    shown = assert_inert(page).all_text
    assert f"migration for {scene.new} failed: {DETAIL}" in shown  # the history's reason
    assert SCRIPT in shown and "failed" in shown
    browser.screenshot(history, "history", DESKTOP)
    browser.screenshot(history, "history", PHONE)


def test_an_unknown_stacks_page_is_a_404_page_in_the_browser(
    scene: demo.Scene, browser: Browser
) -> None:
    """A name that is markup, asked for in the URL, comes back as text on a 404 page."""
    url = f"{scene.base_url}/stacks/{urllib.parse.quote(SCRIPT, safe='')}"
    shown = assert_inert(browser.dom(url)).all_text
    assert f"No stack named {SCRIPT} is managed here." in shown
