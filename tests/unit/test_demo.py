"""The demo runner: the first failing step stops it, naming the step and its log; the closing table."""

from __future__ import annotations

import json

from scones import demo


def test_a_failing_step_stops_the_demo_and_names_step_and_log(tmp_path, capsys):
    fake = tmp_path / "scones"
    fake.write_text('#!/bin/sh\necho "scones $*"\nif [ "$1" = train ]; then echo "no data" >&2; exit 7; fi\n')
    fake.chmod(0o755)
    code = demo.main(["--out", str(tmp_path / "demo"), "--scones", str(fake)])
    err = capsys.readouterr().err
    log = tmp_path / "demo" / "logs" / "03-train.log"
    assert code == 1
    assert f"step 3 'train' failed (exit 7); its log: {log}" in err
    assert log.read_text() == "scones train\nno data\n"
    assert not (tmp_path / "demo" / "logs" / "04-evaluate.log").exists()


def test_the_summary_table_shows_both_verdicts_and_where_things_are(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"accuracy": 0.985, "ece": 0.011}))
    load = {"sent": 200, "succeeded": 198, "failed": 2, "latency_ms": {"p50": 61.0, "p95": 90.0}}
    (tmp_path / "load-clean.json").write_text(json.dumps(load))
    (tmp_path / "load-dark.json").write_text(json.dumps(load))
    for name, verdict, failed in (("monitor-clean", "OK", []), ("monitor-dark", "DRIFT", ["brightness"])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps({"verdict": verdict, "failed_checks": failed}))
    rows, expected = demo.summary_rows(tmp_path)
    text = dict(rows)
    assert expected
    assert text["test accuracy / ECE"] == "0.9850 / 0.0110"
    assert text["workflow latency p50 / p95 (burst, 8 in flight)"] == "61.0 / 90.0 ms"
    assert text["clean burst"] == "sent 200: 198 succeeded, 2 failed"
    assert (text["monitor, clean traffic"], text["monitor, dark traffic"]) == ("OK", "DRIFT (brightness)")
    assert "monitor-dark/report.html" in demo.table(rows)
