"""Git faults met by a running daemon (in-process `daemon.Daemon`, its scheduler live).

Unit tests hold each refusal at the source and catalog (tests/unit/test_source.py,
test_catalog.py); here the evidence is the daemon's: what it keeps reconciling, what its
metrics and log lines say, and that nothing else is lost.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from reconciler import daemon, spec
from reconciler.embedded import Emulator
from tests.faults.conftest import UPDATE_SECONDS
from tests.faults.daemonkit import (
    DaemonWorld,
    create_stacks,
    make_settings,
    spec_yaml,
    wait_until,
)
from tests.integration.gitrepo import GitRepo

APP, OTHER = "app", "other"
APP_FILE, OTHER_FILE = f"deploy-specs/{APP}.yaml", f"deploy-specs/{OTHER}.yaml"


@pytest.fixture
def world(tmp_path: pathlib.Path) -> Iterator[DaemonWorld]:
    """Two specs (two stacks) InSync under a running daemon."""
    with Emulator(update_seconds=UPDATE_SECONDS) as emu:
        image = emu.register_image("biglearn-v1")
        create_stacks(emu, image, "Stack1", "Stack2")
        repo = GitRepo(tmp_path / "repo")
        repo.commit(
            "two specs",
            {
                APP_FILE: spec_yaml(APP, "Stack1", image),
                OTHER_FILE: spec_yaml(OTHER, "Stack2", image),
            },
        )
        d = daemon.Daemon(make_settings(tmp_path / "state", repo.path, emu.endpoint_url))
        d.start()
        try:
            w = DaemonWorld(emu, repo, image, d)
            for name in (APP, OTHER):
                wait_until(
                    lambda n=name: (
                        w.status(n)["phase"] == "InSync" if d.engine.status(n) else False
                    ),
                    20,
                    f"{name} InSync",
                )
            yield w
        finally:
            d.stop()


def test_an_unreachable_remote_keeps_the_last_good_revision_and_reports_staleness(
    world: DaemonWorld,
) -> None:
    """The repository moved away: each poll counts git_fetch_total{result="error"} and logs
    it, the last-success timestamp stops, and both specs keep being reconciled at their last
    revision; once the repository is back, the next poll succeeds and the stamp moves."""
    w = world
    revision = w.status(APP)["revision"]
    stamp = w.sample("reconciler_git_last_success_timestamp_seconds")
    errors = w.sample("reconciler_git_fetch_total", result="error")
    hidden = w.repo.path.with_name("repo-moved")
    w.repo.path.rename(hidden)
    with capture_logs() as entries:
        for _ in range(3):
            w.daemon.poll_git()
    assert w.sample("reconciler_git_fetch_total", result="error") == errors + 3
    assert w.sample("reconciler_git_last_success_timestamp_seconds") == stamp
    failed = [e for e in entries if e["event"].startswith("git poll failed")]
    assert len(failed) == 3 and "does not appear to be a git repository" in failed[0]["error"]
    for name in (APP, OTHER):
        w.wait_reconciled(name, more=2)
        assert w.status(name)["phase"] == "InSync"
    assert w.status(APP)["revision"] == revision
    hidden.rename(w.repo.path)
    w.daemon.poll_git()
    assert w.sample("reconciler_git_last_success_timestamp_seconds") > stamp


def test_a_force_push_that_rewrites_history_is_followed_to_the_new_head(
    world: DaemonWorld,
) -> None:
    """A commit read by the daemon is rewritten away (reset and a different commit, as a
    force-push leaves the branch): the daemon follows the new head and its revisions."""
    w = world
    first = w.repo.commit("interval 2s", {APP_FILE: spec_yaml(APP, "Stack1", w.image, "2s")})
    w.daemon.poll_git()
    assert w.status(APP)["revision"] == first
    w.repo.git("reset", "--quiet", "--hard", "HEAD~1")
    rewritten = w.repo.commit("interval 3s", {APP_FILE: spec_yaml(APP, "Stack1", w.image, "3s")})
    w.daemon.poll_git()
    assert w.status(APP)["revision"] == rewritten != first
    assert w.daemon.catalog.specs[APP].deployment.spec.interval.total_seconds() == 3
    assert not w.daemon.catalog.errors
    w.wait_reconciled(APP)


def test_broken_spec_files_are_each_refused_with_file_and_line_and_nothing_else_is_lost(
    world: DaemonWorld,
) -> None:
    """One push adds invalid YAML, a wrong type, a duplicate metadata.name, a huge file and
    a symlink out of the repository, and breaks a managed spec: every one is an error with
    its file and line (log line and reconciler_spec_errors{file}); the broken managed spec
    keeps its last valid revision (stale), the holder of the duplicated name keeps it, and
    both specs keep being reconciled."""
    w = world
    before = w.status(APP)["revision"]
    (w.repo.path / "deploy-specs" / "escape.yaml").symlink_to("/etc/passwd")
    wrong_type = spec_yaml("typed", "Stack3", w.image).replace("api: 1", "api: many")
    huge = spec_yaml("huge", "Stack4", w.image) + "#" * (spec.MAX_SPEC_BYTES + 1)
    w.repo.git("add", "deploy-specs/escape.yaml")
    w.repo.commit(
        "a bad push",
        {
            "deploy-specs/bad-yaml.yaml": "apiVersion: reconciler/v1\nkind: [\nmetadata: {",
            "deploy-specs/typed.yaml": wrong_type,
            "deploy-specs/dup.yaml": spec_yaml(OTHER, "Stack1", w.image),
            "deploy-specs/huge.yaml": huge,
            APP_FILE: spec_yaml(APP, "Stack1", w.image).replace("interval: 1s", "interval: soon"),
        },
    )
    with capture_logs() as entries:
        w.daemon.poll_git()
    logged = {(e["file"], e["line"]) for e in entries if e["event"] == "invalid spec"}
    files = {f"deploy-specs/{f}.yaml" for f in ("escape", "bad-yaml", "typed", "dup", "huge", APP)}
    # The duplicate is an error in both files; the file that held the name keeps it.
    assert {f for f, _ in logged} == {*files, OTHER_FILE}
    lines = {e.file: e.line for e in w.daemon.catalog.errors}
    assert lines["deploy-specs/bad-yaml.yaml"] >= 2  # where the YAML breaks, not line 1
    assert lines["deploy-specs/typed.yaml"] == 10  # capacity.api
    assert lines[APP_FILE] == 16  # spec.interval
    for file in files:
        assert w.sample("reconciler_spec_errors", file=file) >= 1, file
    assert set(w.daemon.catalog.specs) == {APP, OTHER}
    assert w.status(APP)["revision"] == before and w.status(APP)["staleSpec"] is True
    assert w.daemon.catalog.specs[OTHER].file == OTHER_FILE
    for name in (APP, OTHER):
        w.wait_reconciled(name, more=2)
        assert w.status(name)["phase"] == "InSync"
