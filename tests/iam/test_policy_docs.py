"""docs/iam-policy.json is the one list of the daemon's permissions: the docs that explain
it name exactly its actions, and the README points at it instead of keeping a copy."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
POLICY = ROOT / "docs" / "iam-policy.json"
EXPLAINED = ROOT / "docs" / "iam.md"
README = ROOT / "README.md"
ACTION = re.compile(r"\b[a-z0-9-]+:[A-Z][A-Za-z0-9]+\b")


def policy_actions() -> set[str]:
    actions: set[str] = set()
    for statement in json.loads(POLICY.read_text())["Statement"]:
        listed = statement["Action"]
        actions.update([listed] if isinstance(listed, str) else listed)
    return actions


def table_actions(markdown: str) -> set[str]:
    """The actions in the first column of the "Why each action" table; a name without a
    service (`cloudformation:A, B`) belongs to the service named before it in the cell."""
    actions: set[str] = set()
    for row in markdown.splitlines():
        cells = row.split("|")
        if len(cells) < 3 or not ACTION.search(cells[1]):
            continue
        service = ""
        for token in re.split(r"[,/]", re.sub(r"\(.*?\)", "", cells[1])):
            name = token.strip()
            if ":" in name:
                service, name = name.split(":", 1)
            actions.add(f"{service}:{name}")
    return actions


def test_the_iam_doc_explains_exactly_the_policys_actions() -> None:
    assert table_actions(EXPLAINED.read_text()) == policy_actions()


def test_the_readme_links_the_policy_and_lists_no_actions_of_its_own() -> None:
    """A copy in the README went stale once (it missed ListStackResources and ListBucket)."""
    readme = README.read_text()
    assert "docs/iam-policy.json" in readme
    assert set(ACTION.findall(readme)) & policy_actions() == set()
