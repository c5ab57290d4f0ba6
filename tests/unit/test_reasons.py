"""Reason codes: failures stored before codes existed get theirs back from their wording."""

from __future__ import annotations

import pathlib

import pytest

from reconciler import model, reasons
from reconciler.aws import act
from reconciler.reasons import Reason
from tests.unit.plannerkit import NEW, REV, T0

# Messages exactly as the versions without codes stored them.
LEGACY = [
    ("migration for ami-2 failed: exit 3 in 0042_add_index", Reason.MIGRATION_FAILED),
    ("migration for ami-2 failed", Reason.MIGRATION_FAILED),
    ("migration for ami-2 failed: update refused by the database", Reason.MIGRATION_FAILED),
    ("migration for ami-2 did not succeed within 30m", Reason.MIGRATION_TIMED_OUT),
    ("switch update rolled back: Instance i-1 failed to stabilize", Reason.UPDATE_ROLLED_BACK),
    ("migrate update rolled back: no reason given", Reason.UPDATE_ROLLED_BACK),
    (
        "migrate update has been UPDATE_IN_PROGRESS for longer than 45m",
        Reason.UPDATE_TIMED_OUT,
    ),
    ("API group not healthy on ami-2 within 45m (0/1 healthy on ami-2)", Reason.UNHEALTHY),
    (
        "API group not healthy on ami-2 within 45m (0/1 healthy on ami-2); "
        "rolled the API group back to ami-1",
        Reason.ROLLED_BACK,
    ),
    (
        "update refused: ValidationError: Parameter 'X' did not succeed within limits",
        Reason.UPDATE_REFUSED,
    ),
]


@pytest.mark.parametrize(("text", "code"), LEGACY)
def test_a_legacy_failure_message_maps_to_its_code(text: str, code: Reason) -> None:
    assert reasons.legacy_failure_code(text) == code


def test_every_legacy_code_is_a_failure_code() -> None:
    assert {code for _, code in LEGACY} <= reasons.FAILURES


def test_a_failure_refuses_a_code_that_is_not_a_failure() -> None:
    with pytest.raises(ValueError, match="not a failure code"):
        model.Failure(1, "x", T0, T0, REV, NEW, Reason.IN_SYNC)


def test_the_contract_documents_every_reason_code() -> None:
    doc = (pathlib.Path(__file__).parents[2] / "docs" / "contract.md").read_text()
    rows = {line.split("`")[1] for line in doc.splitlines() if line.startswith("| `")}
    assert set(map(str, Reason)) <= rows


def test_a_busy_stack_is_recognised_where_aws_answers_not_above() -> None:
    """The AWS edge reads AWS's wording once; the engine reads `busy`."""
    busy = act.UpdateRefused(
        "ValidationError", "Stack:arn:x is in UPDATE_IN_PROGRESS state and can not be updated."
    )
    assert busy.busy
    assert not act.UpdateRefused("ValidationError", "Parameter 'X' must be a number").busy
