import numpy as np

from training.calibration import expected_calibration_error, fit_temperature, softmax


def overconfident(n: int = 2000, seed: int = 0):
    """Logits of a model that is right 80% of the time but ~99.9% sure of every answer."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    predicted = np.where(rng.random(n) < 0.8, labels, 1 - labels)
    logits = np.zeros((n, 2))
    logits[np.arange(n), predicted] = rng.normal(7.0, 1.0, n)
    return logits, labels


def test_temperature_scaling_lowers_ece_of_an_overconfident_model():
    logits, labels = overconfident()
    before = expected_calibration_error(softmax(logits), labels)
    temperature = fit_temperature(logits[:1000], labels[:1000])
    after = expected_calibration_error(softmax(logits[1000:], temperature), labels[1000:])
    assert before > 0.15
    assert temperature > 2
    assert after < 0.05 and after < before / 3


def test_a_perfect_calibration_split_does_not_drive_temperature_to_zero():
    labels = np.array([0, 1] * 50)
    logits = np.zeros((100, 2))
    logits[np.arange(100), labels] = 4.0
    assert 0.2 < fit_temperature(logits, labels) < 1.0


def test_ece_of_a_calibrated_predictor_is_small():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.5, 1.0, 20000)
    labels = (rng.random(20000) < p).astype(int)  # class 1 with probability p
    probs = np.stack([1 - p, p], axis=1)
    assert expected_calibration_error(probs, labels) < 0.02
