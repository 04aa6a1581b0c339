"""The state folder is private to its user (scones/core/statedir.py, docs/security.md)."""

from __future__ import annotations

import os
import stat

import pytest

from scones.cli import main
from scones.core import lock, settings, statedir
from scones.core.errors import UsageError


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_state_folder_is_0700_whatever_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        made = statedir.ensure(tmp_path / "a" / "state")
    finally:
        os.umask(old)
    assert mode(made) == 0o700


def test_a_loose_one_is_tightened_with_one_line_once(tmp_path, capsys):
    state = tmp_path / "loose"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    statedir.ensure(state)
    assert mode(state) == 0o700
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "was mode 755; tightened to 700" in lines[0]
    state.chmod(0o750)
    statedir.ensure(state)
    assert mode(state) == 0o700 and capsys.readouterr().err == ""  # said once per process


def test_a_private_one_is_left_alone_and_nothing_is_created_when_not_asked(tmp_path, capsys):
    state = tmp_path / "private"
    state.mkdir(mode=0o700)
    statedir.ensure(state)
    assert mode(state) == 0o700 and capsys.readouterr().err == ""
    assert not statedir.ensure(tmp_path / "absent", create=False).exists()


def test_one_that_is_not_ours_is_a_named_error(tmp_path, monkeypatch):
    state = tmp_path / "theirs"
    state.mkdir(mode=0o777)
    state.chmod(0o777)

    def refuse(self, mode):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(type(state), "chmod", refuse)
    with pytest.raises(UsageError) as refused:
        statedir.ensure(state)
    assert "not yours" in refused.value.line() and settings.STATE_DIR in refused.value.line()


def test_commands_and_the_lock_make_the_state_folder_private(tmp_path, monkeypatch, capsys):
    state = tmp_path / "cli-state"
    monkeypatch.setenv(settings.STATE_DIR, str(state))
    with lock.hold("local", "test", log=lambda _m: None):
        assert mode(state) == 0o700
    state.chmod(0o775)
    main(["env"])
    assert mode(state) == 0o700
    assert "tightened to 700" in capsys.readouterr().err
