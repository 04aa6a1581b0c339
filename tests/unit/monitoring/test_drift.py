"""The statistics behind the drift checks, against known values, and the checks' verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scones.monitoring import drift


def test_ks_statistic_and_p_value_match_known_values():
    assert drift.ks_statistic([1, 2, 3], [1, 2, 3]) == 0
    assert drift.ks_statistic([1, 2, 3, 4], [3, 4, 5, 6]) == 0.5
    # Kolmogorov critical values: P(K > 1.358) = 0.05, P(K > 1.628) = 0.01
    assert drift.kolmogorov_sf(1.358) == pytest.approx(0.05, abs=2e-4)
    assert drift.kolmogorov_sf(1.628) == pytest.approx(0.01, abs=2e-4)
    assert drift.kolmogorov_sf(0.0) == 1.0
    assert drift.ks_p_value(0.5, 1000, 1000) < 1e-50


def test_chi_square_tail_matches_tables():
    assert drift.chi2_sf(3.841, 1) == pytest.approx(0.05, abs=1e-4)
    assert drift.chi2_sf(6.635, 1) == pytest.approx(0.01, abs=1e-4)
    assert drift.chi2_sf(21.666, 9) == pytest.approx(0.01, abs=1e-4)
    assert drift.chi2_sf(0.5, 2) == pytest.approx(np.exp(-0.25))
    chi2, df, p = drift.chi2_homogeneity(np.array([50, 50]), np.array([50, 50]))
    assert (chi2, df, p) == (0.0, 1, 1.0)


def frame(rng, n, brightness=0.5, labels=("a", "b"), weights=(0.5, 0.5), confidence=0.97):
    return pd.DataFrame(
        {
            "confidence": np.clip(rng.normal(confidence, 0.02, n), 0, 1),
            "brightness": rng.normal(brightness, 0.1, n),
            "contrast": rng.normal(0.2, 0.03, n),
            "predicted": rng.choice(list(labels), n, p=list(weights)),
        }
    )


def verdicts(base, current, threshold=0.93):
    return {c.name: c.verdict for c in drift.run(base, current, ["a", "b"], threshold)}


def test_same_distribution_passes_and_each_shift_fails_its_own_check():
    rng = np.random.default_rng(0)
    base = frame(rng, 300)
    assert set(verdicts(base, frame(rng, 200)).values()) == {"OK"}
    assert verdicts(base, frame(rng, 200, brightness=0.3))["brightness"] == "DRIFT"
    assert verdicts(base, frame(rng, 200, weights=(1.0, 0.0)))["predicted"] == "DRIFT"
    shifted = verdicts(base, frame(rng, 200, confidence=0.92))
    assert shifted["confidence"] == "DRIFT" and shifted["low_confidence_rate"] == "DRIFT"


def test_a_significant_but_tiny_difference_is_not_drift():
    rng = np.random.default_rng(1)
    base, current = rng.normal(0, 1, 200_000), rng.normal(0.05, 1, 200_000)
    check = drift.ks_check("x", base, current)
    assert check.p_value < drift.ALPHA and check.statistic < drift.MIN_DISTANCE and not check.failed


def test_low_confidence_rate_only_alarms_on_an_increase():
    base = np.array([0.99] * 90 + [0.5] * 10)
    assert not drift.low_confidence_check(base, np.array([0.99] * 100), 0.93).failed
    worse = drift.low_confidence_check(base, np.array([0.99] * 60 + [0.5] * 40), 0.93)
    assert worse.failed and worse.statistic == pytest.approx(0.3)


def test_violations_use_model_monitors_field_names():
    rng = np.random.default_rng(2)
    base = frame(rng, 300)
    checks = drift.run(base, frame(rng, 200, brightness=0.2), ["a", "b"], 0.93)
    found = drift.violations(checks)["violations"]
    assert [v["feature_name"] for v in found] == ["brightness"]
    assert set(found[0]) == {"feature_name", "constraint_check_type", "description"}
    assert found[0]["constraint_check_type"] == "baseline_drift_check"
