"""Each variant's answer quality over a sliding window: what a rollout's low-confidence and drift alarms read.

Per variant, every endpoint worker keeps the top-class confidence of that variant's last `size` answers
($SCONES_ROLLOUT_WINDOW, 100 by default). Every metrics period in which a variant answered, once its window is
full, the worker puts these metrics to CloudWatch beside SageMaker's own (namespace `scones`, the monitor's;
dimensions EndpointName and VariantName):
  LowConfidenceRate   the share of the window below the workflow's threshold ($SCONES_THRESHOLD): the share of
                      its answers the workflow's filter would fail
and, for every variant but production (AllTraffic) once production's window in the same worker is full too:
  LowConfidenceRise   its LowConfidenceRate minus production's
  ConfidenceDrift     the two-sample Kolmogorov–Smirnov distance D between its window and production's
Both compare the same live traffic answered at the same time by the two models. The reference is production's
live answers, not the training baseline `scones monitor` uses: a canary asks whether the candidate answers
today's traffic worse than the model it replaces, and traffic that has drifted from the training set moves both
models alike (that is the monitor's job to report), never the candidate's alone. An absolute rate would also
roll back a faithful copy of a model that is often unsure on this traffic.
The alarms' thresholds (scones/rollout.py default_alarms) follow from the window's size at the monitor's ALPHA
(0.01), floored at the monitor's minimum distances: `rise_threshold`, the one-sided critical difference of two
proportions at their widest (p = 0.5); `drift_threshold`, D's critical value for two full windows.
A window is per worker: with N workers, a variant's window fills N times more slowly.
"""

from __future__ import annotations

import math
from collections import deque
from datetime import datetime

import numpy as np

NAMESPACE = "scones"  # the monitor's namespace (scones/monitoring/monitor.py NAMESPACE)
LOW_CONFIDENCE = "LowConfidenceRate"
RISE = "LowConfidenceRise"
DRIFT = "ConfidenceDrift"
ALPHA = 0.01  # the monitor's (scones/monitoring/drift.py ALPHA)
MIN_DISTANCE = 0.1  # the monitor's minimum KS distance (drift.py MIN_DISTANCE)
MIN_RISE = 0.05  # the monitor's minimum low-confidence increase (drift.py MIN_LOW_CONFIDENCE_INCREASE)
Z_ONE_SIDED = 2.3263  # the standard normal's 1 − ALPHA quantile


def drift_threshold(size: int) -> float:
    """The KS distance two windows of `size` answers from one distribution exceed with probability ALPHA
    (asymptotic: c(α) √(2/size), c(α) = √(−ln(α/2)/2)), at least MIN_DISTANCE."""
    return max(MIN_DISTANCE, math.sqrt(-math.log(ALPHA / 2) / 2) * math.sqrt(2 / size))


def rise_threshold(size: int) -> float:
    """The rise of a share over another's, each of `size` answers, that the same share exceeds with probability
    ALPHA at most (normal approximation, variance at its largest, p = 0.5), at least MIN_RISE."""
    return max(MIN_RISE, Z_ONE_SIDED * math.sqrt(2 * 0.25 / size))


def ks_distance(a, b) -> float:
    """max |F_a − F_b| over every value of either sample (the monitor's too: scones/monitoring/drift.py, which
    may import this module, where this one may not import the monitor)."""
    a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    grid = np.concatenate([a, b])
    cdf_a, cdf_b = np.searchsorted(a, grid, "right") / len(a), np.searchsorted(b, grid, "right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


class Window:
    """The top-class confidence of a variant's last `size` answers."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.values: deque[float] = deque(maxlen=size)

    def add(self, probabilities) -> None:
        """One answer (a row of probabilities) or a batch's (rows)."""
        rows = np.asarray(probabilities, float)
        self.values.extend(rows.reshape(-1, rows.shape[-1]).max(axis=1).tolist())

    @property
    def full(self) -> bool:
        return len(self.values) == self.size

    def low_confidence_rate(self, threshold: float) -> float:
        return sum(v < threshold for v in self.values) / len(self.values)


def metric_data(
    endpoint: str, variant: str, window: Window, reference: Window | None, threshold: float, when: datetime
) -> list[dict]:
    """The variant's quality metrics now: nothing until its window is full; no drift without a full reference."""
    if not window.full:
        return []
    dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
    rate = window.low_confidence_rate(threshold)
    figures = [(LOW_CONFIDENCE, rate)]
    if reference is not None and reference is not window and reference.full:
        figures.append((RISE, rate - reference.low_confidence_rate(threshold)))
        figures.append((DRIFT, ks_distance(window.values, reference.values)))
    return [
        {"MetricName": name, "Dimensions": dims, "Timestamp": when, "Value": value, "Unit": "None"}
        for name, value in figures
    ]
