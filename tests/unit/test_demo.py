"""The demo runner: the first failing step stops it, naming the step and its log; the closing table."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from helpers import make_brightness_model

from scones import demo
from scones.core import settings


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


def test_the_last_steps_promote_one_rollout_and_roll_back_a_broken_one_with_1_s_alarms(tmp_path):
    found = {s.name: s for s in demo.steps(tmp_path, "synthetic", "bicycle,motorcycle", 10)}
    promoted, rolled_back = found["rollout-promoted"], found["rollout-rolled-back"]
    assert list(found)[-2:] == ["rollout-promoted", "rollout-rolled-back"]
    assert promoted.args[-2:] == ["--rollout", "canary:50:3"] and promoted.expect == 0
    assert "@candidates:same" in promoted.args and promoted.prepare is demo.candidates
    assert "@candidates:broken" in rolled_back.args and "--force" in rolled_back.args and rolled_back.expect == 4
    for step in (promoted, rolled_back):
        assert step.traffic and step.env == {"SCONES_ROLLOUT_PERIOD_S": "1", "SCONES_ENDPOINT_METRICS_S": "1"}


def test_a_rollout_step_expects_its_exit_code_and_keeps_the_why_line(tmp_path, monkeypatch):
    # given a scones that rolls back (exit 4), printing what `scones deploy --rollout` prints, and fake traffic
    fake = tmp_path / "scones"
    fake.write_text(
        "#!/bin/sh\n"
        'echo "rollout plan for endpoint ep: canary:50:30 from m1 to $3 (period $SCONES_ROLLOUT_PERIOD_S s)"\n'
        'echo "rollback: 100% of endpoint ep back on m1 (alarm ep-candidate-5xx: Invocation5XXErrors Sum 3 (1 of '
        'the last 2 periods of 1 s breach GreaterThanThreshold 0, 1 missing))"\n'
        'echo "rollback done in 1.2 s: the candidate is unloaded"\n'
        "exit 4\n"
    )
    fake.chmod(0o755)
    (tmp_path / "candidates.json").write_text(json.dumps({"broken": "/models/broken"}))
    counts = {"sent": 40, "succeeded": 31, "failed": 9, "lost": 0, "by_variant": {"AllTraffic": 31}}

    @contextlib.contextmanager
    def traffic(out, step):
        yield
        (out / f"{step.name}.json").write_text(json.dumps({"traffic": counts}))

    monkeypatch.setattr(demo, "traffic", traffic)
    env = {"SCONES_ROLLOUT_PERIOD_S": "1"}
    step = demo.Step("rollout-rolled-back", ["deploy", "--model", "@candidates:broken"], env, expect=4, traffic=True)
    # when it runs: exit 4 is what it expects
    demo.run_step(20, step, tmp_path, str(fake), env={"PATH": "/usr/bin:/bin"})
    # then the model was substituted, the step's own environment passed, and the why-line kept beside the counts
    found = json.loads((tmp_path / "rollout-rolled-back.json").read_text())
    assert found["exit"] == 4 and found["traffic"] == counts
    assert found["lines"]["plan"].endswith("to /models/broken (period 1 s)")
    (label, row), (why, because) = demo.rollout_rows("broken", found)
    assert row.startswith("rolled back automatically (") and label == "broken"
    assert row.endswith("40 requests during it: 31 answered, 9 failed, 0 lost")
    assert why == "  why" and because.startswith("alarm ep-candidate-5xx: Invocation5XXErrors Sum 3 (1 of the last 2")
    # and the same step exiting 0 (the broken model promoted) stops the demo
    fake.write_text("#!/bin/sh\necho 'all stages passed: endpoint ep serves /models/broken alone'\nexit 0\n")
    with pytest.raises(demo.StepFailed, match="step 20 'rollout-rolled-back' failed \\(exit 0\\)"):
        demo.run_step(20, step, tmp_path, str(fake))


def test_the_summary_shows_a_promoted_rollout_and_a_rolled_back_one(tmp_path):
    counts = {"sent": 30, "succeeded": 30, "failed": 0, "lost": 0}
    promoted = {"exit": 0, "seconds": 9.5, "traffic": counts, "lines": {"promoted": "all stages passed: …"}}
    (tmp_path / "rollout-promoted.json").write_text(json.dumps(promoted))
    rows = dict(demo.summary_rows(tmp_path)[0])
    assert rows["rollout of the same model (canary:50:3)"] == (
        "promoted (9.5 s in all); 30 requests during it: 30 answered, 0 failed, 0 lost"
    )
    assert rows["rollout of a broken model (canary:50:30)"] == "not run"
    # and a request without an answer during a rollout is counted against the demo
    assert demo.lost_in_rollouts(tmp_path) == 0
    (tmp_path / "rollout-rolled-back.json").write_text(json.dumps({"traffic": {**counts, "lost": 2}}))
    assert demo.lost_in_rollouts(tmp_path) == 2


def test_the_candidates_are_a_copy_of_the_served_model_and_a_broken_one_in_a_folder_per_run(tmp_path, monkeypatch):
    # given an endpoint record naming the model it serves, from an earlier run's folder, and a stale run's folder
    monkeypatch.setenv("SCONES_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SCONES_ENDPOINT_NAME", "ep")
    out = tmp_path / "demo"
    served = make_brightness_model(out / "models" / "run-1" / "same")
    (out / "models" / "run-0").mkdir(parents=True)
    record = settings.endpoint_record_path("ep")
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"model_dir": str(served)}))
    # when the rollout steps' candidates are made
    demo.candidates(out)
    found = json.loads((out / "candidates.json").read_text())
    same, broken = Path(found["same"]), Path(found["broken"])
    # then `same` is the served model under a new name, `broken` has its labels and preprocessing
    assert same != served and same.parent.name.startswith("run-") and same.parent.name != "run-1"
    assert (same / "model.onnx").read_bytes() == (served / "model.onnx").read_bytes()
    assert (broken / "labels.json").read_text() == (served / "labels.json").read_text()
    assert json.loads((broken / "config.json").read_text()) == json.loads((served / "config.json").read_text())
    # and the stale run's folder is gone, the one the endpoint serves from kept
    assert not (out / "models" / "run-0").exists() and served.is_dir()
