"""The threshold evaluate, load and monitor judge answers by (scones.deploy.stack.filter_threshold)."""

from __future__ import annotations

import pytest

from scones.core import settings
from scones.core.errors import UsageError
from scones.deploy import stack


@pytest.mark.parametrize(
    ("requested", "deployed", "setting", "expected"),
    [
        (0.5, 0.9, "0.8", 0.5),  # asked for: wins
        (None, 0.9, "0.8", 0.9),  # else the deployed stack's
        (None, 0.0, "0.8", 0.0),  # a deployed 0 is a threshold, not "none deployed"
        (None, None, "0.8", 0.8),  # else the setting
    ],
)
def test_the_asked_then_the_deployed_then_the_setting(monkeypatch, requested, deployed, setting, expected):
    monkeypatch.setattr(stack, "deployed_threshold", lambda name=None: deployed)
    monkeypatch.setenv(settings.THRESHOLD, setting)
    assert stack.filter_threshold(requested) == expected


def test_outside_0_to_1_is_refused(monkeypatch):
    monkeypatch.setattr(stack, "deployed_threshold", lambda name=None: None)
    with pytest.raises(UsageError, match=r"outside 0\.\.1"):
        stack.filter_threshold(1.5)
