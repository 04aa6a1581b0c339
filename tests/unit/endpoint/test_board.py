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


def test_a_retired_worker_keeps_its_counts_and_its_uncaptured_records_are_lost_killed():
    # given a worker that answered and captured 10 records and wrote 6 before it died
    board = Board(2)
    board.slot = 1
    board.set(pid=123, loaded=1, requests=10, captured=10, written=6)
    # when the supervisor retires it and a new worker takes its slot
    lost = board.retire(1)
    board.set(loaded=1, requests=2, captured=2)
    # then the totals keep the dead worker's counts and the 4 records its buffer held are counted lost
    assert lost == 4 and board.total("lost_killed") == 4
    assert board.total("requests") == 12 and board.total("captured") == 12 and board.total("written") == 6
    assert board.total("pid") == 0 and list(board.column("requests")) == [0, 2]
