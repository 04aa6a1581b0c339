"""The report's plots: drawn two at a time (half in a forked process), the same files as drawn one by one."""

from __future__ import annotations

import json
import os
import threading

import pytest
from helpers import solid_png

from scones.monitoring import baseline, capture, monitor, report
from services.endpoint.capture import record

LABELS = ["bicycle", "motorcycle"]


def write_pid(path):
    path.write_text(str(os.getpid()))


@pytest.fixture
def single_threaded(monkeypatch):
    """This process as the CLI's is when it draws: no other thread (here, other tests' daemons may linger)."""
    monkeypatch.setattr(threading, "active_count", lambda: 1)


def test_beside_runs_the_work_in_a_forked_child_and_redoes_a_failure_here(tmp_path, capfd, single_threaded):
    # given work that writes the id of the process doing it
    parent = os.getpid()
    wait = report.beside(lambda: write_pid(tmp_path / "a"))
    wait()
    # then a child did it
    assert int((tmp_path / "a").read_text()) not in (parent, 0)

    # given work that fails in the child only: this process does it again on waiting
    def here_only():
        if os.getpid() != parent:
            raise OSError("not here")
        write_pid(tmp_path / "b")

    report.beside(here_only)()
    assert int((tmp_path / "b").read_text()) == parent

    # given work that fails everywhere: its error is raised here, and the child printed no traceback
    def broken():
        raise OSError("disk full")

    wait = report.beside(broken)
    with pytest.raises(OSError, match="disk full"):
        wait()
    assert "Traceback" not in capfd.readouterr().err


def test_beside_works_here_while_other_threads_run(tmp_path):
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        report.beside(lambda: write_pid(tmp_path / "a"))()
    finally:
        stop.set()
        other.join()
    assert int((tmp_path / "a").read_text()) == os.getpid()  # forking a threaded process is not safe


def test_the_plots_drawn_two_at_a_time_are_the_plots_drawn_one_by_one(tmp_path, single_threaded):
    # given a capture of 40 records and a baseline of the same kind
    lines = [
        record(solid_png(20 + 5 * i), "image/png", f"[{0.5 + i / 100}, {0.5 - i / 100}]".encode()) for i in range(40)
    ]
    (tmp_path / "c.jsonl").write_text("\n".join(map(json.dumps, lines)))
    table = capture.read(capture.Location.parse(str(tmp_path / "c.jsonl")), LABELS)
    frame = table.frame()
    base = baseline.Baseline(frame, LABELS, baseline.statistics(frame, LABELS), baseline.constraints(LABELS, 0.93), {})
    result = monitor.analyse(capture.Location.parse(str(tmp_path / "c.jsonl")), base, "test", 0.93)
    written = []
    # when the report's plots are drawn, with the caller's own work meanwhile
    plots = report.write_plots(result, tmp_path, lambda: written.append("records.csv"))
    # then the four plots, in the report's order, each the very file its function draws alone
    assert list(plots) == ["confidence_over_time", "confidence_histogram", "class_mix", "drift_panel"]
    assert written == ["records.csv"]
    alone = tmp_path / "alone"
    alone.mkdir()
    shares = base.frame["predicted"].value_counts(normalize=True).to_dict()
    drawn = [
        report.plot_confidence_over_time(result.frame, 0.93, alone / report.PLOTS[0]),
        report.plot_confidence_histogram(base.frame, result.frame, 0.93, alone / report.PLOTS[1]),
        report.plot_class_mix(result.frame, LABELS, shares, alone / report.PLOTS[2]),
        report.plot_drift_panel(result.checks, alone / report.PLOTS[3]),
    ]
    assert [p.read_bytes() for p in plots.values()] == [p.read_bytes() for p in drawn]


def test_warm_up_draws_once_and_leaves_any_error_to_the_plots(monkeypatch):
    drawn = []
    real = report._pyplot
    monkeypatch.setattr(report, "_pyplot", lambda: drawn.append(1) or real())
    report.warm_up()
    assert drawn == [1]

    def missing():
        raise ImportError("No module named 'matplotlib'")

    monkeypatch.setattr(report, "_pyplot", missing)
    report.warm_up()  # no error: the plots import again and say it


def test_monitor_warms_the_plots_up_while_its_workers_read(tmp_path, monkeypatch):
    # given two capture files and a baseline folder
    for f in range(2):
        lines = [record(solid_png(30 + 9 * i + f), "image/png", b"[0.9, 0.1]") for i in range(20)]
        (tmp_path / "cap" / f"{f}.jsonl").parent.mkdir(exist_ok=True)
        (tmp_path / "cap" / f"{f}.jsonl").write_text("\n".join(map(json.dumps, lines)))
    frame = capture.read(capture.Location.parse(str(tmp_path / "cap")), LABELS).frame()
    meta = {"model": "test", "labels": LABELS, "images": len(frame), "threshold": 0.93}
    made = baseline.Baseline(
        frame, LABELS, baseline.statistics(frame, LABELS), baseline.constraints(LABELS, 0.93), meta
    )
    baseline.write(made, tmp_path / "base")
    threads = []
    monkeypatch.setattr(
        report, "warm_up", lambda: threads.append(threading.current_thread() is threading.main_thread())
    )
    # when `scones monitor` runs
    result = monitor.run(
        str(tmp_path / "cap"), str(tmp_path / "base"), tmp_path / "out", 0.93, metrics=False, log=lambda _: None
    )
    # then the plots' warm-up ran once, in a thread beside the reading where there are workers, and the report is out
    assert threads == [capture.cores() < 2]
    assert result.analysed == 40 and (tmp_path / "out" / "report.html").is_file()
