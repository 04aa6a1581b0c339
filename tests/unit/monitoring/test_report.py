"""The report's plots: drawn two at a time (half in a forked process), the same files as drawn one by one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading

from helpers import solid_png

from scones.monitoring import baseline, capture, monitor, report
from services.endpoint.capture import record

LABELS = ["bicycle", "motorcycle"]


def write_pid(path):
    path.write_text(str(os.getpid()))


def fresh(folder, code: str) -> subprocess.CompletedProcess:
    """`code` run in `folder` by a fresh interpreter, which has one thread as the CLI has when it draws. Not in this
    process: other tests leave threads running here, and a child forked while one of them holds a lock (stderr's,
    say) can hang, which is why `beside` does not fork beside other threads."""
    command = [sys.executable, "-c", textwrap.dedent(code)]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def test_beside_runs_the_work_in_a_forked_child_and_redoes_a_failure_here(tmp_path):
    done = fresh(
        tmp_path,
        """
        import os
        from pathlib import Path
        from scones.monitoring import report

        parent = os.getpid()
        Path("parent").write_text(str(parent))

        def write(name):
            Path(name).write_text(str(os.getpid()))

        report.beside(lambda: write("a"))()  # work that writes the id of the process doing it

        def here_only():  # work that fails in the child only
            if os.getpid() != parent:
                raise OSError("not here")
            write("b")

        report.beside(here_only)()

        def broken():  # work that fails everywhere
            raise OSError("disk full")

        wait = report.beside(broken)
        try:
            wait()
        except OSError as exc:
            Path("error").write_text(str(exc))
        """,
    )
    parent = int((tmp_path / "parent").read_text())
    # then a child did the work; the work that failed there was done again here; an error everywhere is raised
    # here, and the child printed no traceback
    assert int((tmp_path / "a").read_text()) not in (parent, 0)
    assert int((tmp_path / "b").read_text()) == parent
    assert (tmp_path / "error").read_text() == "disk full"
    assert "Traceback" not in done.stderr


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


def test_the_plots_drawn_two_at_a_time_are_the_plots_drawn_one_by_one(tmp_path):
    fresh(
        tmp_path,
        """
        import io, json, os
        from pathlib import Path
        from PIL import Image
        from scones.monitoring import baseline, capture, monitor, report
        from services.endpoint.capture import record

        labels, parent, drawers = ["bicycle", "motorcycle"], os.getpid(), []
        def png(value):
            out = io.BytesIO()
            Image.new("RGB", (32, 32), (value,) * 3).save(out, format="PNG")
            return out.getvalue()

        # given a capture of 40 records and a baseline of the same kind
        outputs = [f"[{0.5 + i / 100}, {0.5 - i / 100}]".encode() for i in range(40)]
        lines = [json.dumps(record(png(20 + 5 * i), "image/png", out)) for i, out in enumerate(outputs)]
        Path("c.jsonl").write_text("\\n".join(lines))
        frame = capture.read(capture.Location.parse("c.jsonl"), labels).frame()
        stats, cons = baseline.statistics(frame, labels), baseline.constraints(labels, 0.93)
        base = baseline.Baseline(frame, labels, stats, cons, {})
        result = monitor.analyse(capture.Location.parse("c.jsonl"), base, "test", 0.93)
        alone = report.plot_confidence_over_time
        def over_time(*args):  # which process draws it
            Path("drawn-by").write_text(str(os.getpid()))
            return alone(*args)
        report.plot_confidence_over_time = over_time
        # when the report's plots are drawn, with the caller's own work meanwhile
        Path("plots").mkdir()
        plots = report.write_plots(result, Path("plots"), lambda: Path("meanwhile").write_text("records.csv"))
        # then each is the very file its function draws alone, in the report's order
        Path("alone").mkdir()
        shares = base.frame["predicted"].value_counts(normalize=True).to_dict()
        drawn = [
            alone(result.frame, 0.93, Path("alone") / report.PLOTS[0]),
            report.plot_confidence_histogram(base.frame, result.frame, 0.93, Path("alone") / report.PLOTS[1]),
            report.plot_class_mix(result.frame, labels, shares, Path("alone") / report.PLOTS[2]),
            report.plot_drift_panel(result.checks, Path("alone") / report.PLOTS[3]),
        ]
        assert list(plots) == ["confidence_over_time", "confidence_histogram", "class_mix", "drift_panel"]
        assert [p.read_bytes() for p in plots.values()] == [p.read_bytes() for p in drawn]
        assert Path("meanwhile").read_text() == "records.csv"
        Path("parent").write_text(str(parent))
        """,
    )
    # and the costly plot was drawn by another process when there are two cores
    drawn_by, parent = (int((tmp_path / name).read_text()) for name in ("drawn-by", "parent"))
    assert (drawn_by != parent) == (capture.cores() > 1)


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
