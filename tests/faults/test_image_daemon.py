"""The daemon runs the image policies: a newer image becomes a bump branch soon after start,
the followed branch and the stack stay as they are until the branch is merged."""

from __future__ import annotations

import datetime as dt
import pathlib

import pytest

from reconciler import daemon, settings
from reconciler.embedded import Emulator
from tests.faults.daemonkit import (
    DaemonWorld,
    create_stacks,
    make_settings,
    spec_yaml,
    wait_until,
)
from tests.integration.gitrepo import GitRepo

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
POLICY = "  imagePolicy:\n    ec2:\n      filters: {name: [app-*]}\n"


def bump_branches(repo: GitRepo) -> list[str]:
    out = repo.git("for-each-ref", "--format=%(refname:short)", "refs/heads/reconciler/bump/")
    return out.split()


def test_a_newer_image_becomes_a_bump_branch_and_no_update(tmp_path: pathlib.Path) -> None:
    with Emulator(update_seconds=0.2) as emu:
        image = emu.register_image("app-1", created=T0)
        newer = emu.register_image("app-2", created=T0 + dt.timedelta(days=1))
        create_stacks(emu, image, "Stack1")
        repo = GitRepo(tmp_path / "repo")
        main = repo.commit(
            "app", {"deploy-specs/app.yaml": spec_yaml("app", "Stack1", image) + POLICY}
        )
        d = daemon.Daemon(make_settings(tmp_path / "state", repo.path, emu.endpoint_url))
        assert d.refusal() is None  # signatures are not verified: nothing to refuse
        d.start()
        try:
            w = DaemonWorld(emu, repo, image, d)
            # The first check follows the first git poll, not the 5 minute interval.
            wait_until(lambda: bump_branches(repo), 20, "a bump branch")
            w.wait_reconciled("app", more=2)
            status = w.status("app")
        finally:
            d.stop()
    assert bump_branches(repo) == [f"reconciler/bump/app/{newer}"]
    assert repo.head() == main and status["desired"]["image"] == image
    updates = w.sample(
        "reconciler_aws_requests_total",
        service="cloudformation",
        operation="UpdateStack",
        result="ok",
    )
    assert updates == 0
    assert w.sample("reconciler_image_policy_checks_total", result="newer") == 1


def test_without_an_image_policy_no_image_is_looked_for(tmp_path: pathlib.Path) -> None:
    with Emulator(update_seconds=0.2) as emu:
        image = emu.register_image("app-1", created=T0)
        emu.register_image("app-2", created=T0 + dt.timedelta(days=1))
        create_stacks(emu, image, "Stack1")
        repo = GitRepo(tmp_path / "repo")
        repo.commit("app", {"deploy-specs/app.yaml": spec_yaml("app", "Stack1", image)})
        d = daemon.Daemon(make_settings(tmp_path / "state", repo.path, emu.endpoint_url))
        d.start()
        try:
            w = DaemonWorld(emu, repo, image, d)
            w.wait_reconciled("app")
            outcomes = d.check_images()
        finally:
            d.stop()
    assert outcomes == [] and bump_branches(repo) == []
    assert w.sample("reconciler_image_policy_checks_total", result="current") == 0
    described = w.sample(
        "reconciler_aws_requests_total", service="ec2", operation="DescribeImages", result="ok"
    )
    assert described == 0


def test_forge_github_without_a_token_is_refused_at_start(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--forge github` with no RECONCILER_FORGE_TOKEN: one line and exit 2 before the
    daemon binds its port or takes the state dir (which stays free)."""
    conf = settings.Settings(
        state_dir=tmp_path / "state",
        git=settings.GitSettings(repo="https://github.com/acme/specs.git"),
        images=settings.ImageSettings(forge="github"),
        http=settings.HttpSettings(listen="127.0.0.1:0"),
    )
    assert daemon.run(conf) == 2
    assert capsys.readouterr().err.splitlines() == ["--forge github needs RECONCILER_FORGE_TOKEN"]
    assert not (tmp_path / "state").exists()
