"""The threshold evaluate, load and monitor judge answers by (scones.stacks.filter_threshold)."""

from __future__ import annotations

import pytest

from scones import stacks
from scones.core import settings
from scones.core.errors import UsageError


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
    monkeypatch.setattr(stacks, "deployed_threshold", lambda name=None: deployed)
    monkeypatch.setenv(settings.THRESHOLD, setting)
    assert stacks.filter_threshold(requested) == expected


def test_outside_0_to_1_is_refused(monkeypatch):
    monkeypatch.setattr(stacks, "deployed_threshold", lambda name=None: None)
    with pytest.raises(UsageError, match=r"outside 0\.\.1"):
        stacks.filter_threshold(1.5)


def test_the_setting_is_scones_threshold(monkeypatch, capsys):
    monkeypatch.delenv(settings.OLD_THRESHOLD, raising=False)
    monkeypatch.setenv("SCONES_THRESHOLD", "0.7")
    assert settings.THRESHOLD == "SCONES_THRESHOLD"
    assert settings.threshold() == 0.7
    assert capsys.readouterr().err == ""


def test_the_old_name_still_works_with_one_deprecation_line_per_process(monkeypatch, capsys):
    # given: only the old THRESHOLD is set, in a process that has not yet warned
    settings._deprecated.cache_clear()
    monkeypatch.delenv(settings.THRESHOLD, raising=False)
    monkeypatch.setenv("THRESHOLD", "0.6")
    # when: the threshold is read twice
    assert settings.threshold() == 0.6
    assert settings.threshold() == 0.6
    # then: one line on stderr names both variables
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "$THRESHOLD is deprecated" in err and "$SCONES_THRESHOLD" in err
    # and: the new name wins when both are set, silently
    monkeypatch.setenv(settings.THRESHOLD, "0.8")
    assert settings.threshold() == 0.8
    assert capsys.readouterr().err == ""
