"""Traffic → capture files → monitor, in-process: the endpoint's own records for images drawn as
`scones load` draws them, read back and checked against a baseline from the serving handlers."""

from __future__ import annotations

import json

import pytest
from helpers import make_brightness_model
from monitoring_fixtures import held_out_images, traffic_records, write_capture

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


def test_too_few_records_is_not_ready(model, images, base, tmp_path):
    write_capture(tmp_path, traffic_records(model, images, drift.MIN_RECORDS - 1, None, 0))
    with pytest.raises(monitor.NotReadyError, match="at least 20"):
        monitor.analyse(capture.Location.parse(str(tmp_path)), base, "test", 0.93)
