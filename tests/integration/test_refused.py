"""An update CloudFormation refuses: a busy stack is waited for, anything else is a failure."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from reconciler import aws, engine, model
from reconciler.aws.clients import Clients
from reconciler.metrics import Metrics
from reconciler.model import Phase
from reconciler.reasons import Reason
from reconciler.store import Store
from tests.integration.conftest import Stack
from tests.integration.test_auto_rollback import loaded


def refusing(code: str, message: str) -> Any:
    def send_update(*args: object) -> None:
        raise aws.UpdateRefused(code, message)

    return send_update


def first_step(
    stack: Stack, clients: Clients, tmp_path: Path
) -> tuple[engine.StepResult, model.Memory, dict[str, Any]]:
    with Store.in_state_dir(tmp_path) as store:
        eng = engine.Engine(clients, store, Metrics(), clock=lambda: dt.datetime.now(dt.UTC))
        result = eng.step(loaded(stack))
        status = eng.status("careful")
        assert status is not None
        return result, store.load("careful"), status.to_json()


def test_a_stack_that_turned_busy_is_waited_for_not_failed(
    stack: Stack, clients: Clients, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    busy = f"Stack:{stack.name} is in UPDATE_IN_PROGRESS state and can not be updated."
    monkeypatch.setattr(aws, "send_update", refusing("ValidationError", busy))
    result, memory, shown = first_step(stack, clients, tmp_path)
    assert result.phase == Phase.WAITING
    assert (memory.failure, memory.pending) == (None, None)
    assert shown["reason"] == Reason.UPDATE_DEFERRED


def test_any_other_refusal_is_a_failure_with_its_code(
    stack: Stack, clients: Clients, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aws, "send_update", refusing("AccessDenied", "not allowed"))
    result, memory, shown = first_step(stack, clients, tmp_path)
    assert result.phase == Phase.FAILED
    assert memory.failure is not None and memory.failure.code == Reason.UPDATE_REFUSED
    assert (shown["reason"], shown["failures"]["code"]) == ("update_refused", "update_refused")
