"""Fixtures for the emulator's own tests: a fresh emulator and the shipped stack per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from reconciler.embedded import Emulator
from tests.embedded.embeddedkit import STACK, UPDATE_SECONDS


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(update_seconds=UPDATE_SECONDS, seed=7) as emu:
        yield emu


@pytest.fixture
def images(emulator: Emulator) -> tuple[str, str]:
    """(old, new): two registered AMIs."""
    return emulator.register_image("biglearn-old"), emulator.register_image("biglearn-new")


@pytest.fixture
def stack(emulator: Emulator, images: tuple[str, str]) -> str:
    """The shipped template as Stack1 on the old image; its stack id."""
    old, _ = images
    return emulator.create_stack(
        STACK, {"EnvName": "blah", "LcImageId": old, "MigrationLcImageId": old}
    )


@pytest.fixture
def cfn(emulator: Emulator) -> Any:
    """A CloudFormation client that shows every error (no retries)."""
    return emulator.client("cloudformation", attempts=1)
