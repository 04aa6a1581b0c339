"""Drift checks of the captured traffic against the baseline, each with its stated test and threshold.

Every check gives a distance and a p-value; it fails (a violation) only when BOTH hold:
  p < ALPHA (0.01)                    the difference is unlikely to be sampling noise, and
  distance > its minimum              the difference is big enough to matter (Model Monitor's "Robust" method).
The checks:
  confidence, brightness, contrast    two-sample Kolmogorov–Smirnov: distance D = max |F_current − F_baseline|,
                                      asymptotic p-value (Stephens' correction); minimum D 0.1
  predicted (class mix)               chi-square test of homogeneity on the 2×k table of class counts
                                      (baseline, current); distance L∞ = max |share_current − share_baseline|;
                                      minimum 0.1
  low_confidence_rate                 share of records below the workflow's threshold vs the baseline's share;
                                      one-sided two-proportion z-test; minimum increase 0.05
Five checks at 1 % each: under no drift at most ~5 % of runs raise an alarm (union bound); measured in
bench/bench_monitor.py. Numpy and the standard library only (no scipy).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

ALPHA = 0.01
MIN_DISTANCE = 0.1  # KS D and class-mix L∞ (constraints.json: comparison_threshold)
MIN_LOW_CONFIDENCE_INCREASE = 0.05
MIN_RECORDS = 20  # fewer usable records than this cannot be judged
KS_FEATURES = ("confidence", "brightness", "contrast")


@dataclass
class Check:
    name: str  # the feature checked
    test: str  # e.g. "KS two-sample"
    statistic: float  # the distance (KS D, L∞, rate increase)
    p_value: float
    min_distance: float
    baseline: float  # a summary of each side for the report (mean, or rate)
    current: float
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.p_value < ALPHA and self.statistic > self.min_distance

    @property
    def verdict(self) -> str:
        return "DRIFT" if self.failed else "OK"

    @property
    def threshold_text(self) -> str:
        return f"p < {ALPHA:g} and {self.distance_name} > {self.min_distance:g}"

    @property
    def distance_name(self) -> str:
        return {"KS two-sample": "D", "chi-square": "L∞"}.get(self.test, "increase")

    def as_dict(self) -> dict:
        return {**asdict(self), "failed": self.failed, "verdict": self.verdict, "threshold": self.threshold_text}


# --- distributions (numpy implementations, checked against known values in the tests) -----------------


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / len(a)
    cdf_b = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def kolmogorov_sf(x: float) -> float:
    """P(K > x) for the Kolmogorov distribution."""
    if x < 0.2:  # the series converges slowly there and the value is 1 to 15 digits
        return 1.0
    k = np.arange(1, 101)
    return float(min(1.0, max(0.0, 2 * np.sum((-1.0) ** (k - 1) * np.exp(-2 * (k * x) ** 2)))))


def ks_p_value(d: float, n: int, m: int) -> float:
    ne = n * m / (n + m)
    return kolmogorov_sf((math.sqrt(ne) + 0.12 + 0.11 / math.sqrt(ne)) * d)


def _gamma_q(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x) (series below a+1, continued fraction above)."""
    if x <= 0:
        return 1.0
    log_prefix = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        ap = a
        for _ in range(1000):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    tiny = 1e-300
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return min(1.0, math.exp(log_prefix) * h)


def chi2_sf(x: float, df: int) -> float:
    return _gamma_q(df / 2, x / 2)


def chi2_homogeneity(counts_a: np.ndarray, counts_b: np.ndarray) -> tuple[float, int, float]:
    """(chi-square, degrees of freedom, p-value) for two samples' category counts."""
    table = np.array([counts_a, counts_b], float)
    table = table[:, table.sum(0) > 0]
    if table.shape[1] < 2 or (table.sum(1) == 0).any():
        return 0.0, 0, 1.0
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    chi2 = float(((table - expected) ** 2 / expected).sum())
    df = table.shape[1] - 1
    return chi2, df, chi2_sf(chi2, df)


def normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


# --- the checks ---------------------------------------------------------------------------------------


def ks_check(name: str, baseline: np.ndarray, current: np.ndarray, min_distance: float = MIN_DISTANCE) -> Check:
    d = ks_statistic(baseline, current)
    return Check(
        name,
        "KS two-sample",
        d,
        ks_p_value(d, len(baseline), len(current)),
        min_distance,
        float(np.mean(baseline)),
        float(np.mean(current)),
        f"mean {np.mean(baseline):.3f} → {np.mean(current):.3f}",
    )


def class_mix_check(
    labels: list[str], baseline: list[str], current: list[str], min_distance: float = MIN_DISTANCE
) -> Check:
    index = {c: i for i, c in enumerate(labels)}
    a = np.bincount([index[c] for c in baseline if c in index], minlength=len(labels))
    b = np.bincount([index[c] for c in current if c in index], minlength=len(labels))
    chi2, df, p = chi2_homogeneity(a, b)
    share_a, share_b = a / max(a.sum(), 1), b / max(b.sum(), 1)
    linf = float(np.max(np.abs(share_a - share_b)))
    top = int(np.argmax(np.abs(share_a - share_b)))
    return Check(
        "predicted",
        "chi-square",
        linf,
        p,
        min_distance,
        float(share_a[top]),
        float(share_b[top]),
        f"χ²={chi2:.1f} (df {df}); share of {labels[top]} {share_a[top]:.2f} → {share_b[top]:.2f}",
    )


def low_confidence_check(baseline: np.ndarray, current: np.ndarray, threshold: float) -> Check:
    n_a, n_b = len(baseline), len(current)
    x_a, x_b = int((baseline < threshold).sum()), int((current < threshold).sum())
    rate_a, rate_b = x_a / n_a, x_b / n_b
    pooled = (x_a + x_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    p = (0.0 if rate_b > rate_a else 1.0) if se == 0 else normal_sf((rate_b - rate_a) / se)
    return Check(
        "low_confidence_rate",
        "two-proportion z (one-sided)",
        rate_b - rate_a,
        p,
        MIN_LOW_CONFIDENCE_INCREASE,
        rate_a,
        rate_b,
        f"below {threshold:g}: {rate_a:.1%} → {rate_b:.1%}",
    )


def run(baseline_frame, current_frame, labels: list[str], threshold: float, min_distance: float = MIN_DISTANCE):
    """Every check of `current_frame` against `baseline_frame` (both capture tables)."""
    checks = [
        ks_check(name, baseline_frame[name].to_numpy(float), current_frame[name].to_numpy(float), min_distance)
        for name in KS_FEATURES
    ]
    checks.append(
        class_mix_check(labels, list(baseline_frame["predicted"]), list(current_frame["predicted"]), min_distance)
    )
    checks.append(
        low_confidence_check(
            baseline_frame["confidence"].to_numpy(float), current_frame["confidence"].to_numpy(float), threshold
        )
    )
    return checks


def violations(checks: list[Check]) -> dict:
    """constraint_violations.json in Model Monitor's format."""
    return {
        "violations": [
            {
                "feature_name": c.name,
                "constraint_check_type": "baseline_drift_check",
                "description": (
                    f"{c.test}: {c.distance_name} {c.statistic:.4f} exceeds {c.min_distance:g} "
                    f"with p-value {c.p_value:.2e} < {ALPHA:g}; {c.detail}"
                ),
            }
            for c in checks
            if c.failed
        ]
    }
