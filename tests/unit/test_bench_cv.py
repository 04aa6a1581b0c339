"""bench/cv_real_finetune.py's coverage ceiling: the risk-coverage bound docs/real-photos.md quotes."""

import numpy as np
import pytest
from helpers import load_bench


@pytest.fixture(scope="module")
def coverage_ceiling():
    return load_bench("cv_real_finetune").coverage_ceiling


def ranked(n: int, wrong: list[int]):
    """n photos of class 0, most confident first; those at the `wrong` ranks predicted class 1."""
    margin = np.linspace(8.0, 0.5, n)
    logits = np.stack([margin, np.zeros(n)], axis=1)
    logits[wrong] = logits[wrong][:, ::-1]
    return logits, np.zeros(n, dtype=int)


def test_the_ceiling_stops_before_the_error_that_drops_covered_accuracy_under_0_99(coverage_ceiling):
    # Given 100 photos whose 51st and 61st most confident are wrong
    logits, labels = ranked(100, [50, 60])
    # Then the best threshold covers the 50 above the first error: 51..60 covered hold one error in < 100
    assert coverage_ceiling(logits, labels) == 0.5


def test_no_temperature_moves_the_ceiling(coverage_ceiling):
    logits, labels = ranked(300, [100, 180, 181, 250])
    ceiling = coverage_ceiling(logits, labels)
    assert ceiling == coverage_ceiling(logits / 3.0, labels) == coverage_ceiling(logits * 2.5, labels)
    assert ceiling == pytest.approx(180 / 300)  # one error in the first 180: 179/180 >= 0.99


def test_photos_of_equal_confidence_are_covered_together(coverage_ceiling):
    # Given ten photos all at one confidence, the last of them wrong: no threshold covers nine without the tenth
    logits, labels = np.zeros((10, 2)), np.zeros(10, dtype=int)
    logits[:, 0] = 3.0
    logits[9] = [0.0, 3.0]
    assert coverage_ceiling(logits, labels) == 0.0


def test_accuracy_of_exactly_0_99_among_the_covered_counts(coverage_ceiling):
    logits, labels = ranked(100, [99])  # all 100 covered: 99/100 right
    assert coverage_ceiling(logits, labels) == 1.0
