"""The Dockerfile lints clean and keeps the properties issue 6 asks of the image."""

from __future__ import annotations

import re
import subprocess

from tests.deploy.deploykit import ROOT, tool

DOCKERFILE = ROOT / "Dockerfile"


def test_hadolint_is_clean() -> None:
    hadolint = tool("hadolint")
    done = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_base_image_is_an_argument_with_an_official_slim_default() -> None:
    steps = instructions()
    assert steps[0][0] == "ARG"
    assert re.fullmatch(r"BASE_IMAGE=python:3\.\d+-slim(-\w+)?", steps[0][1])
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) == 2, "multi-stage: a build stage and a runtime stage"
    assert all(f.startswith("${BASE_IMAGE}") for f in froms)


def test_runtime_stage_is_non_root_with_entrypoint_cmd_and_healthcheck() -> None:
    steps = instructions()
    runtime = steps[[w for w, _ in steps].index("FROM", 2) :]
    values = dict(runtime)
    user = values["USER"].split(":")[0]
    assert user not in ("root", "0")
    assert values["ENTRYPOINT"] == '["reconciler"]'
    assert values["CMD"] == '["run"]'
    assert "/healthz" in values["HEALTHCHECK"]
    assert '"/var/lib/reconciler"' in values["VOLUME"]
    assert "RECONCILER_STATE_DIR=/var/lib/reconciler" in values["ENV"]
    labels = " ".join(rest for word, rest in runtime if word == "LABEL")
    for key in ("title", "version", "revision", "created", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_dependencies_come_from_the_lock() -> None:
    runs = [rest for word, rest in instructions() if word == "RUN" and "pip install" in rest]
    assert runs
    assert all("-c constraints.txt" in run for run in runs)


def test_build_context_is_only_what_the_image_needs() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore
    assert {"!constraints.txt", "!pyproject.toml", "!reconciler/"} <= set(ignore)
