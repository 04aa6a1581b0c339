"""The per-target state lock: a second command waits (saying for whom), or fails at once with --no-wait."""

from __future__ import annotations

import threading
import time

import pytest

from scones.core import lock, settings


def test_a_second_holder_fails_at_once_with_no_wait_naming_the_first(monkeypatch, tmp_path):
    monkeypatch.setenv(settings.STATE_DIR, str(tmp_path))
    with lock.hold("local", "deploy", log=lambda _m: None):
        busy = pytest.raises(lock.LockedError, match=r"`scones deploy` \(pid \d+\) is changing target local")
        with busy, lock.hold("local", "clean", wait=False):
            pass
        with lock.hold("aws", "deploy", wait=False):  # another target is another lock
            pass


def test_a_second_holder_waits_until_the_first_lets_go(monkeypatch, tmp_path):
    monkeypatch.setenv(settings.STATE_DIR, str(tmp_path))
    said, order = [], []

    def first() -> None:
        with lock.hold("local", "deploy", log=said.append):
            order.append("first in")
            time.sleep(0.5)
            order.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    time.sleep(0.1)
    with lock.hold("local", "up", log=said.append):
        order.append("second in")
    thread.join()
    assert order == ["first in", "first out", "second in"]
    assert said and "waiting for `scones deploy`" in said[0]
