"""Writes `constraints.txt`: the image's lock, pinned from the dependencies installed in .venv.

    .venv/bin/python tests/deploy/constraints.py > constraints.txt

Pins the closure of `reconciler[embedded]` (what the image installs: `reconciler demo` runs in
it) at the versions this virtualenv runs and tests with, plus the build tools the image's
builder stage uses. Regenerate after changing dependencies in pyproject.toml and
reinstalling (`make clean test` or `pip install -e '.[dev]'`); `test_constraints.py` fails
while the lock misses a dependency or pins a version pyproject.toml no longer allows.
"""

from __future__ import annotations

import importlib.metadata as md
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = "reconciler[embedded]"
# The builder stage installs these first and builds the wheel without build isolation, so
# the build is pinned too. pyproject.toml's build-system asks for setuptools>=68 and wheel.
BUILD_TOOLS = {"pip": "24.3.1", "setuptools": "80.9.0", "wheel": "0.45.1"}


def closure(root: str = ROOT) -> dict[str, str]:
    """Canonical name -> installed version of every distribution `root` needs here."""
    found: dict[str, str] = {}
    extras_seen: dict[str, set[str]] = {}
    todo = [Requirement(root)]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        extras = set(req.extras)
        if name in extras_seen and extras <= extras_seen[name]:
            continue
        extras_seen[name] = extras_seen.get(name, set()) | extras
        dist = md.distribution(req.name)
        found[name] = dist.version
        for line in dist.requires or []:
            sub = Requirement(line)
            wanted = ["", *sorted(extras_seen[name])]
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in wanted):
                sub.marker = None
                todo.append(sub)
    found.pop("reconciler", None)
    return found


def render() -> str:
    lines = [
        "# The image's lock: pinned versions for `pip install -c constraints.txt`.",
        "# Generated from the tested .venv; do not edit by hand. Regenerate with:",
        "#   .venv/bin/python tests/deploy/constraints.py > constraints.txt",
        "# build tools of the image's builder stage",
        *(f"{name}=={version}" for name, version in sorted(BUILD_TOOLS.items())),
        "# runtime: the closure of reconciler[embedded]",
        *(f"{name}=={version}" for name, version in sorted(closure().items())),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
