"""Traffic → capture files → monitor, in-process: the endpoint's own records for images drawn as
`scones load` draws them, read back and checked against a baseline from the serving handlers."""

from __future__ import annotations

import http.server
import json
import threading

import pytest
from helpers import make_brightness_model
from monitoring_fixtures import held_out_images, traffic_records, write_capture

from scones.core import settings
from scones.monitoring import baseline, capture, drift, monitor, report

pytestmark = pytest.mark.slow  # exports an ONNX model once


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_brightness_model(tmp_path_factory.mktemp("brightness") / "model")


@pytest.fixture(scope="module")
def images():
    return held_out_images()


@pytest.fixture(scope="module")
def base(model, images, tmp_path_factory):
    built = baseline.build(model, images, threshold=0.93, model_uri="test://brightness")
    folder = baseline.write(built, tmp_path_factory.mktemp("baseline"))
    return baseline.read(folder)


def analyse(model, images, base, tmp_path, drift_kind, seed, count=200):
    write_capture(tmp_path, traffic_records(model, images, count, drift_kind, seed))
    return monitor.analyse(capture.Location.parse(str(tmp_path)), base, "test", 0.93)


def test_the_baseline_predicts_the_held_out_images_right(base, images):
    assert len(base.frame) == len(images)
    truth = [name.split("_s_")[0] for name, _ in images]
    assert (base.frame["predicted"] == truth).mean() == 1.0
    assert base.labels == ["bicycle", "motorcycle"]


def test_every_record_of_every_file_is_read(model, images, base, tmp_path):
    result = analyse(model, images, base, tmp_path, None, seed=0, count=200)
    assert result.table.files == 6 and result.table.lines == 200 and result.table.parsed == 200
    assert result.table.unparseable == 0 and len(result.frame) == 200


def test_clean_traffic_raises_no_alarm_over_ten_seeds(model, images, base, tmp_path):
    verdicts = []
    for seed in range(10):
        folder = tmp_path / f"seed-{seed}"
        verdicts.append(analyse(model, images, base, folder, None, seed).verdict)
    # each of the 5 checks tests at 1 %: a false alarm is possible but rare; these seeds give none
    assert verdicts.count("DRIFT") <= 1, verdicts


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("dark", "brightness"), ("noise", "contrast"), ("classmix", "predicted")],
)
def test_each_injected_drift_is_caught_by_its_check(model, images, base, tmp_path, kind, expected):
    result = analyse(model, images, base, tmp_path, kind, seed=1)
    assert result.verdict == "DRIFT"
    assert expected in [c.name for c in result.failed]


def test_outputs_are_written_in_model_monitor_format(model, images, base, tmp_path):
    result = analyse(model, images, base, tmp_path / "cap", "dark", seed=2)
    monitor.write_outputs(result, tmp_path / "out")
    violations = json.loads((tmp_path / "out" / "constraint_violations.json").read_text())["violations"]
    assert violations and {v["feature_name"] for v in violations} >= {"brightness"}
    for v in violations:
        assert set(v) == {"feature_name", "constraint_check_type", "description"}
        assert v["constraint_check_type"] == "baseline_drift_check"
    stats = json.loads((tmp_path / "out" / "statistics.json").read_text())
    assert stats["dataset"]["item_count"] == 200
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["verdict"] == "DRIFT" and summary["records"] == 200
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "<h1>DRIFT</h1>" in html
    assert 'src="http' not in html  # self-contained


def test_the_threshold_drawn_is_the_configured_one(model, images, base, tmp_path):
    result = analyse(model, images, base, tmp_path, None, seed=3)
    fig = report.confidence_over_time_figure(result.frame, 0.87)
    ax = fig.axes[0]
    horizontal = [line.get_ydata() for line in ax.get_lines()]
    assert [0.87, 0.87] in [list(y) for y in horizontal]
    assert any(t.get_text() == "threshold 0.87" for t in ax.texts)


def test_a_baseline_from_another_class_set_is_refused_with_a_reason(model, images, base, tmp_path):
    write_capture(tmp_path, traffic_records(model, images, 30, None, 0))
    other = baseline.Baseline(base.frame, ["a", "b", "c"], base.statistics, base.constraints, base.meta)
    with pytest.raises(monitor.MonitorError, match="another class set") as raised:
        monitor.analyse(capture.Location.parse(str(tmp_path)), other, "other", 0.93)
    assert "30 output has a different number of classes" in str(raised.value)


def test_too_few_records_write_the_report_with_insufficient_data_and_no_alarm(model, images, base, tmp_path):
    # given: one record fewer than the checks need
    write_capture(tmp_path / "cap", traffic_records(model, images, drift.MIN_RECORDS - 1, None, 0))
    result = monitor.analyse(capture.Location.parse(str(tmp_path / "cap")), base, "test", 0.93)
    # then: every check says INSUFFICIENT DATA, none fails, and the files are written all the same
    assert result.verdict == drift.INSUFFICIENT and not result.failed
    assert [c.verdict for c in result.checks] == [drift.INSUFFICIENT] * len(drift.CHECKS)
    monitor.write_outputs(result, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["verdict"] == "INSUFFICIENT DATA" and summary["analysed"] == drift.MIN_RECORDS - 1
    assert {c["verdict"] for c in summary["checks"]} == {"INSUFFICIENT DATA"}
    assert json.loads((tmp_path / "out" / "constraint_violations.json").read_text()) == {"violations": []}
    assert "<h1>INSUFFICIENT DATA</h1>" in (tmp_path / "out" / "report.html").read_text()
    # and no drift metric is sent for a check that could not be judged
    names = [m["MetricName"] for m in monitor.metric_data(result, "ep")]
    assert "DriftDistance" not in names and names.count("DriftDetected") == 1


def test_a_capture_with_no_usable_record_still_writes_the_report(model, images, base, tmp_path):
    # given: an AWS capture file of 2 records whose outputs are NaN
    rec = traffic_records(model, images, 2, None, 0)
    for r in rec:
        r["captureData"]["endpointOutput"]["data"] = "[NaN, 0.5]"
    write_capture(tmp_path / "cap", rec)
    result = monitor.analyse(capture.Location.parse(str(tmp_path / "cap")), base, "test", 0.93)
    monitor.write_outputs(result, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["verdict"] == "INSUFFICIENT DATA" and summary["analysed"] == 0
    assert summary["unparseable_by_reason"] == {capture.NOT_FINITE: 2}
    assert summary["low_confidence_rate"] is None and (tmp_path / "out" / "report.html").is_file()


def test_nan_untimed_and_wrong_baseline_records_are_counted_by_reason(model, images, base, tmp_path):
    # given: 30 good records, 3 with a NaN, 2 out of [0, 1], 2 not summing to 1, 4 without a valid time,
    # 3 with three classes (another model's) and 5 before --since
    recs = traffic_records(model, images, 49, None, 0)
    for r in recs[:3]:
        r["captureData"]["endpointOutput"]["data"] = "[NaN, 1.0]"
    for r in recs[3:5]:
        r["captureData"]["endpointOutput"]["data"] = "[1.5, -0.5]"
    for r in recs[5:7]:
        r["captureData"]["endpointOutput"]["data"] = "[0.7, 0.7]"
    for r in recs[7:10]:
        r["captureData"]["endpointOutput"]["data"] = "[0.2, 0.7, 0.1]"
    for r in recs[10:15]:
        r["eventMetadata"]["inferenceTime"] = "2026-11-27T00:30:00Z"  # before --since
    for r, bad in zip(recs[15:19], ["yesterday", None, 17, ""], strict=True):
        r["eventMetadata"]["inferenceTime"] = bad
    write_capture(tmp_path / "cap", recs, per_file=100)
    since = monitor.parse_since("2026-11-27T01:00:00Z")
    result = monitor.analyse(capture.Location.parse(str(tmp_path / "cap")), base, "test", 0.93, since=since)
    assert dict(result.table.bad) == {
        capture.NOT_FINITE: 3,
        capture.OUT_OF_RANGE: 2,
        capture.NOT_SUMMING: 2,
        capture.CLASS_COUNT: 3,
    }
    assert dict(result.table.excluded) == {capture.BEFORE_SINCE: 5, capture.UNTIMED: 4}
    assert result.analysed == 30 and result.table.parsed == 39
    # the same counts in the JSON and the report
    monitor.write_outputs(result, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["unparseable_by_reason"][capture.NOT_FINITE] == 3
    assert summary["excluded_by_reason"] == {capture.BEFORE_SINCE: 5, capture.UNTIMED: 4}
    page = (tmp_path / "out" / "report.html").read_text()
    assert f"<td>{capture.NOT_FINITE}</td><td>3</td>" in page
    assert f"left out: {capture.UNTIMED}</td><td>4</td>" in page
    # without --since the untimed records are counted, and analysed
    plain = monitor.analyse(capture.Location.parse(str(tmp_path / "cap")), base, "test", 0.93)
    assert plain.table.untimed == 4 and plain.analysed == 39 and not plain.table.excluded


def test_a_baseline_for_other_class_names_is_refused_by_name(model, images, base, tmp_path):
    write_capture(tmp_path, traffic_records(model, images, 30, None, 0))
    with pytest.raises(monitor.MonitorError, match="classes bicycle,motorcycle but the capture's endpoint answers"):
        monitor.analyse(
            capture.Location.parse(str(tmp_path)), base, "b", 0.93, capture_labels=["motorcycle", "bicycle"]
        )
    assert monitor.analyse(capture.Location.parse(str(tmp_path)), base, "b", 0.93, capture_labels=base.labels)


def test_what_the_endpoint_answered_but_never_captured_is_in_the_summary_and_the_report(
    model, images, base, tmp_path, monkeypatch
):
    """Issue #21: a killed worker's answered requests were never captured and nothing said so; the monitor
    reads the local endpoint's loss counters (/_scones/stats) and reports them beside the records it read."""
    lost = {"dropped_full": 0, "unsent": 2, "killed_workers": 283}

    class Stats(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"capture_lost": lost}).encode() if self.path == "/_scones/stats" else b"{}"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Stats)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv(settings.STATE_DIR, str(tmp_path / "state"))
        record = settings.endpoint_record_path("ep")
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"url": f"http://127.0.0.1:{server.server_address[1]}"}))
        assert monitor.capture_lost("ep") == lost
        assert monitor.capture_lost("no-such-endpoint") is None
        result = analyse(model, images, base, tmp_path / "cap", None, seed=3)
        result.capture_lost = monitor.capture_lost("ep")
    finally:
        server.shutdown()
    monitor.write_outputs(result, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["capture_lost"] == lost
    html = (tmp_path / "out" / "report.html").read_text()
    assert "answered by the endpoint, never captured" in html and "283 killed_workers" in html
