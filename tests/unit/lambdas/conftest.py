from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import FakeContext

EVENTS = Path(__file__).resolve().parents[2] / "events"


@pytest.fixture
def context() -> FakeContext:
    return FakeContext()


@pytest.fixture
def event():
    def read(name: str) -> dict:
        return json.loads((EVENTS / f"{name}.json").read_text())

    return read
