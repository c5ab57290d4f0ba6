"""constraints.txt, the image's lock, pins every dependency at a version pyproject allows."""

from __future__ import annotations

import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.constraints import BUILD_TOOLS
from tests.deploy.deploykit import ROOT

REGENERATE = ".venv/bin/python tests/deploy/constraints.py > constraints.txt"


def pins() -> dict[str, str]:
    found = {}
    for raw in (ROOT / "constraints.txt").read_text().splitlines():
        line = raw.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"not a pin: {line}"
            found[canonicalize_name(name)] = version
    return found


def test_every_direct_dependency_is_pinned_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["embedded"]]
    locked = pins()
    for line in wanted:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in locked, f"{name} is not in constraints.txt; regenerate: {REGENERATE}"
        assert req.specifier.contains(locked[name], prereleases=True), (
            f"constraints.txt pins {name}=={locked[name]}, pyproject wants {req.specifier}; "
            f"regenerate: {REGENERATE}"
        )


def test_build_tools_are_pinned() -> None:
    locked = pins()
    for name, version in BUILD_TOOLS.items():
        assert locked[name] == version
