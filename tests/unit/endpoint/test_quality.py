"""Each variant's answer quality over a sliding window (services/endpoint/quality.py), and the endpoint putting it."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from helpers import app_requests as requests
from helpers import make_brightness_model, solid_png

from scones.monitoring import drift, monitor
from services.endpoint import quality
from services.endpoint.app import EndpointApp
from services.endpoint.board import Board
from services.endpoint.variants import Variant

NOW = datetime(2026, 12, 7, tzinfo=UTC)


def window(values, size=None) -> quality.Window:
    found = quality.Window(size or len(values))
    found.add(np.array([[v, 1 - v] for v in values]))
    return found


def test_a_window_keeps_the_latest_top_confidences_and_their_low_confidence_rate():
    w = quality.Window(4)
    w.add(np.array([0.2, 0.8]))  # one answer: its top class's confidence
    w.add(np.array([[0.99, 0.01], [0.5, 0.5], [0.4, 0.6], [0.97, 0.03]]))  # a batch's
    assert w.full and list(w.values) == [0.99, 0.5, 0.6, 0.97]  # the first answer slid out
    assert w.low_confidence_rate(0.93) == 0.5


def test_the_ks_distance_matches_the_monitors():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(size=80), rng.uniform(0.2, 1.2, size=60)
    assert quality.ks_distance(a, b) == pytest.approx(drift.ks_statistic(a, b))
    assert quality.ks_distance([1.0] * 5, [1.0] * 7) == 0


def test_the_thresholds_are_the_critical_values_floored_at_the_monitors_minimums():
    # D's critical value for two samples of 100 at alpha 0.01 is 1.628 * sqrt(2/100) (Smirnov's table: 1.63)
    assert quality.drift_threshold(100) == pytest.approx(1.6276 * (2 / 100) ** 0.5, abs=1e-3)
    assert quality.drift_threshold(10**6) == drift.MIN_DISTANCE
    # one-sided z at 0.01 (2.326) times the widest standard error of a difference of two shares, sqrt(0.5 / n)
    assert quality.rise_threshold(100) == pytest.approx(2.326 * (0.5 / 100) ** 0.5, abs=1e-3)
    assert quality.rise_threshold(10**6) == drift.MIN_LOW_CONFIDENCE_INCREASE
    assert (quality.NAMESPACE, quality.ALPHA) == (monitor.NAMESPACE, drift.ALPHA)


def test_metrics_wait_for_full_windows_and_compare_with_production():
    production, candidate = window([0.99] * 10), window([0.6] * 5 + [0.99] * 5)
    # production: its own rate only
    found = quality.metric_data("ep", "AllTraffic", production, production, 0.93, NOW)
    assert [(d["MetricName"], d["Value"]) for d in found] == [("LowConfidenceRate", 0.0)]
    # the candidate: its rate, its rise over production's and the KS distance between the two windows
    found = {d["MetricName"]: d for d in quality.metric_data("ep", "Candidate", candidate, production, 0.93, NOW)}
    assert {k: d["Value"] for k, d in found.items()} == {
        "LowConfidenceRate": 0.5,
        "LowConfidenceRise": 0.5,
        "ConfidenceDrift": 0.5,
    }
    assert found["ConfidenceDrift"]["Dimensions"] == [
        {"Name": "EndpointName", "Value": "ep"},
        {"Name": "VariantName", "Value": "Candidate"},
    ]
    # nothing from a window not yet full; no comparison with a production window not yet full
    assert quality.metric_data("ep", "Candidate", window([0.6] * 9, 10), production, 0.93, NOW) == []
    found = quality.metric_data("ep", "Candidate", candidate, window([0.99] * 9, 10), 0.93, NOW)
    assert [d["MetricName"] for d in found] == ["LowConfidenceRate"]


def test_the_endpoint_puts_each_variants_quality_in_the_scones_namespace(tmp_path):
    # given production sure of bright images and a candidate unsure of them, windows of 4 answers
    sure, unsure = make_brightness_model(tmp_path / "sure"), make_brightness_model(tmp_path / "unsure", sharpness=0.5)
    variants = [Variant("AllTraffic", sure, 1.0), Variant("Candidate", unsure, 1.0)]
    put: list[tuple[str, dict]] = []
    app = EndpointApp(
        sure,
        "ep",
        variants=variants,
        board=Board(1, 2),
        put_metrics=lambda data, namespace="AWS/SageMaker": put.extend((namespace, d) for d in data),
        metrics_period_s=1,
        window=4,
        threshold=0.93,
    )
    app._load()
    for target in ("AllTraffic", "Candidate"):
        requests(app, [solid_png(230)] * 4, [(b"x-amzn-sagemaker-target-variant", target.encode())])
    # when the metrics are put
    app._put_metrics()
    # then beside SageMaker's, the windowed ones go to the scones namespace, per variant
    windowed = {
        (d["MetricName"], d["Dimensions"][1]["Value"]): d["Value"] for namespace, d in put if namespace == "scones"
    }
    assert windowed == {
        ("LowConfidenceRate", "AllTraffic"): 0.0,
        ("LowConfidenceRate", "Candidate"): 1.0,
        ("LowConfidenceRise", "Candidate"): 1.0,
        ("ConfidenceDrift", "Candidate"): 1.0,
    }
    assert {d["MetricName"] for namespace, d in put if namespace == "AWS/SageMaker"} >= {"Invocations"}
    # and a period without requests puts none of them
    put.clear()
    app._put_metrics()
    assert put == []
