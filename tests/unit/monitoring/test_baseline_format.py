"""statistics.json and constraints.json carry Model Monitor's field names."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scones.core.errors import UsageError
from scones.monitoring import baseline, capture, monitor


def a_frame(n=50):
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "time": [None] * n,
            "file": [f"f{i}.png" for i in range(n)],
            "predicted": rng.choice(["bicycle", "motorcycle"], n),
            "confidence": rng.uniform(0.5, 1, n),
            "margin": rng.uniform(0, 1, n),
            "brightness": rng.uniform(0, 1, n),
            "contrast": rng.uniform(0, 0.3, n),
            "width": [32] * n,
            "height": [32] * n,
        },
        columns=list(capture.COLUMNS),
    )


def test_statistics_json_fields():
    stats = baseline.statistics(a_frame(), ["bicycle", "motorcycle"])
    assert set(stats) == {"version", "dataset", "features"} and stats["dataset"]["item_count"] == 50
    by_name = {f["name"]: f for f in stats["features"]}
    assert by_name["confidence"]["inferred_type"] == "Fractional"
    assert by_name["width"]["inferred_type"] == "Integral"
    numeric = by_name["confidence"]["numerical_statistics"]
    assert set(numeric) >= {"common", "mean", "sum", "std_dev", "min", "max", "distribution"}
    assert set(numeric["common"]) == {"num_present", "num_missing"} and numeric["common"]["num_present"] == 50
    buckets = numeric["distribution"]["kll"]["buckets"]
    assert sum(b["count"] for b in buckets) == 50 and set(buckets[0]) == {"lower_bound", "upper_bound", "count"}
    strings = by_name["predicted"]
    assert strings["inferred_type"] == "String"
    cat = strings["string_statistics"]["distribution"]["categorical"]["buckets"]
    assert [b["value"] for b in cat] == ["bicycle", "motorcycle"] and sum(b["count"] for b in cat) == 50
    assert strings["string_statistics"]["distinct_count"] == 2


def test_constraints_json_fields():
    cons = baseline.constraints(["bicycle", "motorcycle"], 0.93)
    by_name = {f["name"]: f for f in cons["features"]}
    assert by_name["confidence"]["completeness"] == 1.0
    assert by_name["confidence"]["num_constraints"] == {"is_non_negative": True}
    assert by_name["predicted"]["string_constraints"]["domains"] == ["bicycle", "motorcycle"]
    dc = cons["monitoring_config"]["distribution_constraints"]
    assert dc["perform_comparison"] == "Enabled"
    assert dc["comparison_method"] == "Robust" and dc["comparison_threshold"] == 0.1


def test_a_baseline_round_trips_and_a_broken_folder_is_named(tmp_path):
    made = baseline.Baseline(a_frame(), ["bicycle", "motorcycle"], {}, baseline.constraints(["a", "b"], 0.9), {})
    made.meta = {"labels": made.labels, "images": 50}
    made.statistics = baseline.statistics(made.frame, made.labels)
    baseline.write(made, tmp_path / "b")
    back = baseline.read(tmp_path / "b")
    assert back.labels == ["bicycle", "motorcycle"] and len(back.frame) == 50 and back.comparison_threshold == 0.1
    (tmp_path / "b" / "baseline.csv").unlink()
    try:
        baseline.read(tmp_path / "b")
    except baseline.BaselineError as exc:
        assert "baseline.csv" in str(exc)
    else:
        raise AssertionError("a folder without baseline.csv was read")


def test_a_broken_baseline_in_s3_is_one_line_naming_its_uri_and_leaves_no_folder(tmp_path, monkeypatch):
    # given a --baseline prefix in S3 whose baseline.csv has no rows, and tempfile's folders kept where they are seen
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    def download(uri: str, folder: Path) -> bool:
        for name in baseline.FILES:
            (folder / name).write_text("{}" if name.endswith(".json") else "predicted,confidence\n")
        return True

    monkeypatch.setattr(monitor, "_download", download)
    # when the monitor resolves it, then the error is a usage error naming the URI, not the scratch folder
    with pytest.raises(UsageError, match=r"^--baseline s3://b/base/: s3://b/base/baseline\.csv lacks"):
        monitor.resolve_baseline("s3://b/base/", "b", "data", 0.93, log=lambda _m: None)
    assert not list(scratch.iterdir())
