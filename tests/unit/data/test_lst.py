"""The .lst format has one reader/writer (scones/data/lst.py) and a private copy in training/train.py, which must
run alone in SageMaker's container: both must read a staged split identically."""

from __future__ import annotations

import numpy as np
import pytest

from scones.data import lst


def test_train_py_reads_a_staged_split_exactly_as_the_project_does(tiny_staged, monkeypatch):
    from training import train

    monkeypatch.setenv("SM_CHANNEL_TEST", str(tiny_staged / "test"))
    theirs = train.load_split("test", 2)
    ours = lst.load_images(tiny_staged / "test", tiny_staged / "test.lst")
    assert np.array_equal(theirs[0], ours[0]) and np.array_equal(theirs[1], ours[1])
    assert len(ours[1]) == 20 and set(ours[1]) == {0, 1}


def test_rows_round_trip_and_bad_lines_name_their_line():
    rows = [lst.Row(0, 1, "bicycle_s_000001.png"), lst.Row(1, 0, "motorcycle_s_000002.png")]
    assert lst.parse(lst.dumps(rows).decode()) == rows
    assert lst.parse("0\t1.0\ta.png\n\n") == [lst.Row(0, 1, "a.png")]  # the built-in algorithm writes floats
    with pytest.raises(lst.LstError, match=r"x\.lst:2: expected index<TAB>label<TAB>path"):
        lst.parse("0\t1\ta.png\n0 1 b.png\n", "x.lst")
    with pytest.raises(lst.LstError, match=r"x\.lst:1: index and label must be numbers"):
        lst.parse("0\tbicycle\ta.png\n", "x.lst")
