"""Promotion: production rolls out only what staging already runs, in sync, for its bake time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler import cli
from reconciler.store import Store
from tests.integration.conftest import REGION, Stack
from tests.integration.gitrepo import GitRepo

BAKE = dt.timedelta(seconds=3)


def spec_text(name: str, stack: str, image: str, promotion: str = "") -> str:
    return (
        "apiVersion: reconciler/v1\n"
        "kind: StackDeployment\n"
        f"metadata:\n  name: {name}\n"
        "spec:\n"
        f"  stackName: {stack}\n"
        f"  region: {REGION}\n"
        f"  image: {image}\n"
        "  migration:\n    check: none\n"
        f"{promotion}"
    )


def test_production_waits_for_staging_to_bake_then_rolls(
    make_stack: Callable[..., Stack], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    staging, prod = make_stack("Staging"), make_stack("Prod")
    image = staging.new_image
    repo = GitRepo(tmp_path / "repo")
    follow = f"  promotion:\n    after: staging\n    bake: {BAKE.seconds}s\n"
    repo.commit(
        "deploy to staging and promote to prod",
        {
            "deploy-specs/staging.yaml": spec_text("staging", staging.name, image),
            "deploy-specs/prod.yaml": spec_text("prod", prod.name, image, follow),
        },
    )
    state = tmp_path / "state"
    code = cli.main(
        [
            "apply",
            "--wait",
            "--interval",
            "0.2",
            "--timeout",
            "60s",
            "--repo",
            str(repo.path),
            "--state-dir",
            str(state),
            "--log-format",
            "json",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "promotion: " in out  # prod said why it waited
    with Store.in_state_dir(state) as store:
        (staged,) = store.history("staging")
        (promoted,) = store.history("prod")
    assert staged.result == promoted.result == "succeeded"
    assert staged.finished_at is not None
    assert promoted.started_at >= staged.finished_at + BAKE
