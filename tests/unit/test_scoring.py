"""scones/scoring.py's figures: coverage, accuracy among covered and the false-pass rate per outlier kind,
first on probabilities given by hand, then through the serving handlers on a model with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import make_brightness_model

from scones import scoring as evaluate


def test_coverage_and_accuracy_among_covered():
    probs = np.array([[0.99, 0.01], [0.95, 0.05], [0.10, 0.90], [0.02, 0.98], [0.93, 0.07]])
    labels = np.array([0, 1, 1, 1, 0])
    found = evaluate.selective(probs, labels, 0.93)
    # covered: rows 0, 1, 3, 4 (0.93 itself passes, as in the filter Lambda); row 1 is wrong
    assert found == {"threshold": 0.93, "coverage": 0.8, "n_covered": 4, "accuracy_covered": 0.75}


def test_nothing_covered_has_no_accuracy():
    found = evaluate.selective(np.array([[0.5, 0.5]]), np.array([0]), 0.93)
    assert found["coverage"] == 0.0 and found["accuracy_covered"] is None


def test_false_pass_per_kind_counts_any_class_at_or_above_the_threshold():
    probs = np.array([[0.99, 0.01], [0.5, 0.5], [0.04, 0.96], [0.6, 0.4], [0.7, 0.3], [0.93, 0.07]])
    kinds = np.array([0, 0, 1, 1, 1, 2])
    found = evaluate.false_pass(probs, kinds, ["bus", "noise", "flat", "never-staged"], 0.93)
    assert found["per_kind"] == {
        "bus": {"n": 2, "passed": 1, "rate": 0.5},
        "noise": {"n": 3, "passed": 1, "rate": pytest.approx(1 / 3)},
        "flat": {"n": 1, "passed": 1, "rate": 1.0},
    }
    assert (found["n"], found["passed"], found["rate"]) == (6, 3, 0.5)
    table = evaluate.false_pass_table({"false_pass": found})
    assert "bus" in table and "0.500  (1/2)" in table and "all held-out outliers  0.500  (3/6)" in table


def solid(values: list[int]) -> np.ndarray:
    return np.stack([np.full((32, 32, 3), v, dtype=np.uint8) for v in values])


def test_evaluate_through_the_serving_handlers_on_a_model_with_known_answers(tmp_path):
    # the brightness model: bright -> bicycle ~1.0, dark -> motorcycle ~1.0, mid-grey -> ~0.5 each
    model_dir = make_brightness_model(tmp_path / "model")
    images = solid([230, 230, 230, 25, 25, 128, 128, 25])
    labels = np.array([0, 0, 0, 1, 1, 0, 1, 0])  # the last one is confidently wrong
    outlier_images = solid([128, 120, 135, 240, 20, 128])
    kinds = np.array([0, 0, 0, 1, 1, 2])  # grey ones fail the filter; very bright and very dark ones pass
    metrics = evaluate.evaluate(model_dir, images, labels, (outlier_images, kinds, ["grey", "extreme", "g2"]), 0.93)
    assert metrics["accuracy"] == pytest.approx(6 / 8)
    assert metrics["coverage"] == pytest.approx(6 / 8) and metrics["n_covered"] == 6
    assert metrics["accuracy_covered"] == pytest.approx(5 / 6)
    fp = metrics["false_pass"]
    assert fp["per_kind"]["grey"]["rate"] == 0.0 and fp["per_kind"]["extreme"]["rate"] == 1.0
    assert fp["per_kind"]["g2"] == {"n": 1, "passed": 0, "rate": 0.0}
    assert fp["rate"] == pytest.approx(2 / 6)
    without = evaluate.evaluate(model_dir, images, labels)
    assert "false_pass" not in without and "not measured" in evaluate.false_pass_table(without)


def test_a_models_reports_folder_is_named_after_its_job():
    from scones import models

    assert models.job_of("s3://b/models/scones-20261127/output/model.tar.gz") == "scones-20261127"
    assert models.job_of("/home/u/.scones/jobs/j1/model.tar.gz") == "j1"  # not the grandparent folder
    assert models.job_of("./runs/best.tar.gz") == "best"
    assert models.job_of("./runs/j2/model") == "j2"
