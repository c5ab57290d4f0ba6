"""Fixtures for the replica tests: DynamoDB from the embedded emulator, a table per test.

One emulator per module (moto keeps its state in module globals, so only one runs at a
time per process); each test gets a fresh table, so tests share nothing but the server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from reconciler.embedded import Emulator
from reconciler.store import create_table


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator() as e:
        yield e


@pytest.fixture
def dynamodb(emulator: Emulator) -> Any:
    return emulator.client("dynamodb", attempts=1)


@pytest.fixture
def table(dynamodb: Any) -> str:
    name = f"reconciler-{uuid.uuid4().hex[:8]}"
    create_table(dynamodb, name)
    return name


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
