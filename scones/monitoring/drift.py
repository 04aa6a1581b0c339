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

The current side is never held record by record: the KS checks read it as counts on fixed bins (`EDGES`, the
baseline binned the same way), so the distance is exact at every bin edge and can miss at most one bin's
share; the class mix and the low-confidence rate are counts. Fewer than MIN_RECORDS analysed records give every
check the verdict INSUFFICIENT DATA (no p-value, never an alarm).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

from services.endpoint import quality

ALPHA = 0.01
MIN_DISTANCE = 0.1  # KS D and class-mix L∞ (constraints.json: comparison_threshold)
MIN_LOW_CONFIDENCE_INCREASE = 0.05
MIN_RECORDS = 20  # fewer usable records than this cannot be judged
KS_FEATURES = ("confidence", "brightness", "contrast")
INSUFFICIENT = "INSUFFICIENT DATA"
CHECKS = (*KS_FEATURES, "predicted", "low_confidence_rate")

# Histogram edges on 0..1: 4,096 equal bins, and 512 more between 1 − 10⁻²·⁵ and 1 − 10⁻⁷ where confidences
# crowd. Values outside 0..1 fall in the first or the last bucket.
EDGES = np.unique(np.concatenate([np.linspace(0.0, 1.0, 4097), 1 - np.logspace(-7, -2.5, 512)]))


def histogram(values) -> np.ndarray:
    """Counts on EDGES: bucket i holds the values in (EDGES[i-1], EDGES[i]]; the last bucket, those above 1."""
    values = np.asarray(values, float)
    return np.bincount(np.searchsorted(EDGES, values, side="left"), minlength=len(EDGES) + 1)


@dataclass
class Counts:
    """The current side of the checks, as counts: what a capture read accumulates (capture.CaptureTable.counts)."""

    n: int
    hist: Mapping[str, np.ndarray]  # KS_FEATURES -> histogram()
    means: Mapping[str, float]
    classes: Mapping[str, int]  # predicted label -> records
    below: int  # records with confidence below the threshold
    extra: dict = field(default_factory=dict)

    @classmethod
    def of_frame(cls, frame, threshold: float) -> Counts:
        """The counts of a table of records (pandas), e.g. for a test or the baseline."""
        values = {name: frame[name].to_numpy(float) for name in KS_FEATURES}
        return cls(
            len(frame),
            {name: histogram(v) for name, v in values.items()},
            {name: float(np.mean(v)) if len(v) else math.nan for name, v in values.items()},
            frame["predicted"].value_counts().to_dict(),
            int((values["confidence"] < threshold).sum()),
        )


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
    insufficient: bool = False  # too few records to judge: no verdict either way

    @property
    def failed(self) -> bool:
        return not self.insufficient and self.p_value < ALPHA and self.statistic > self.min_distance

    @property
    def verdict(self) -> str:
        return INSUFFICIENT if self.insufficient else "DRIFT" if self.failed else "OK"

    @property
    def threshold_text(self) -> str:
        return f"p < {ALPHA:g} and {self.distance_name} > {self.min_distance:g}"

    @property
    def distance_name(self) -> str:
        return {"KS two-sample": "D", "chi-square": "L∞"}.get(self.test, "increase")

    def as_dict(self) -> dict:
        return {**asdict(self), "failed": self.failed, "verdict": self.verdict, "threshold": self.threshold_text}


# --- distributions (numpy implementations, checked against known values in the tests) -----------------


ks_statistic = quality.ks_distance  # the two-sample KS D, one implementation for the monitor and the endpoint


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


def ks_binned(counts_a: np.ndarray, counts_b: np.ndarray) -> float:
    """The KS distance of two samples given as counts on the same bins (exact at every bin edge)."""
    cdf_a = np.cumsum(counts_a) / max(int(counts_a.sum()), 1)
    cdf_b = np.cumsum(counts_b) / max(int(counts_b.sum()), 1)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def ks_counts_check(
    name: str, baseline: np.ndarray, current: np.ndarray, current_mean: float, min_distance: float = MIN_DISTANCE
) -> Check:
    """The KS check of the baseline's values against the current side's histogram (`histogram`)."""
    n, m = len(baseline), int(current.sum())
    d = ks_binned(histogram(baseline), current)
    mean_a = float(np.mean(baseline))
    return Check(
        name,
        "KS two-sample",
        d,
        ks_p_value(d, n, m),
        min_distance,
        mean_a,
        current_mean,
        f"mean {mean_a:.3f} → {current_mean:.3f}",
    )


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
    counts: dict[str, int] = {}
    for c in current:
        counts[c] = counts.get(c, 0) + 1
    return class_counts_check(labels, baseline, counts, min_distance)


def class_counts_check(
    labels: list[str], baseline: list[str], current: Mapping[str, int], min_distance: float = MIN_DISTANCE
) -> Check:
    index = {c: i for i, c in enumerate(labels)}
    a = np.bincount([index[c] for c in baseline if c in index], minlength=len(labels))
    b = np.array([int(current.get(c, 0)) for c in labels])
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
    return low_confidence_counts_check(baseline, len(current), int((np.asarray(current) < threshold).sum()), threshold)


def low_confidence_counts_check(baseline: np.ndarray, n_b: int, x_b: int, threshold: float) -> Check:
    """The baseline's confidences against `x_b` of `n_b` current records below the threshold."""
    n_a, x_a = len(baseline), int((np.asarray(baseline) < threshold).sum())
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


def insufficient(n: int) -> list[Check]:
    """Every check, with the verdict INSUFFICIENT DATA: `n` records cannot be judged."""
    tests = {"predicted": "chi-square", "low_confidence_rate": "two-proportion z (one-sided)"}
    return [
        Check(
            name,
            tests.get(name, "KS two-sample"),
            math.nan,
            math.nan,
            MIN_LOW_CONFIDENCE_INCREASE if name == "low_confidence_rate" else MIN_DISTANCE,
            math.nan,
            math.nan,
            f"{n} usable record(s); the checks need at least {MIN_RECORDS}",
            insufficient=True,
        )
        for name in CHECKS
    ]


def run(baseline_frame, current, labels: list[str], threshold: float, min_distance: float = MIN_DISTANCE):
    """Every check of `current` (a table of records, or its `Counts`) against `baseline_frame` (a table)."""
    if not isinstance(current, Counts):
        current = Counts.of_frame(current, threshold)
    if current.n < MIN_RECORDS:
        return insufficient(current.n)
    checks = [
        ks_counts_check(
            name, baseline_frame[name].to_numpy(float), current.hist[name], current.means[name], min_distance
        )
        for name in KS_FEATURES
    ]
    checks.append(class_counts_check(labels, list(baseline_frame["predicted"]), current.classes, min_distance))
    checks.append(
        low_confidence_counts_check(baseline_frame["confidence"].to_numpy(float), current.n, current.below, threshold)
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
