"""The board of counters that several worker processes share."""

from __future__ import annotations

import os

from services.endpoint.board import Board


def test_board_is_shared_with_forked_workers():
    board = Board(2)
    pid = os.fork()
    if pid == 0:
        board.slot = 1
        board.set(requests=7)
        os._exit(0)
    os.waitpid(pid, 0)
    assert board.total("requests") == 7
