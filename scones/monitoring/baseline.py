"""The baseline: the model's answers on held-out images, in Model Monitor's file formats.

The held-out images (the staged test split) go through the serving handlers themselves
(services/endpoint/inference.py), so the baseline holds what the endpoint answers for the images the model
was evaluated on. A baseline folder holds:
  statistics.json   Model Monitor format: version, dataset.item_count, features[] with numerical_statistics
                    (common, mean, sum, std_dev, min, max, distribution.kll) or string_statistics
  constraints.json  Model Monitor format: features[] (completeness, num_constraints.is_non_negative,
                    string_constraints.domains) and monitoring_config.distribution_constraints
  baseline.csv      the per-image rows (same columns as the capture table): two-sample tests need the sample
  baseline.json     model URI, class names, threshold, number of images
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scones.core.files import write_atomic
from scones.monitoring import capture, drift
from services.endpoint import inference

FILES = ("statistics.json", "constraints.json", "baseline.csv", "baseline.json")
FRACTIONAL = ("confidence", "margin", "brightness", "contrast")
INTEGRAL = ("width", "height")
KLL_BUCKETS = 10


class BaselineError(ValueError):
    """The baseline cannot be made or read."""


@dataclass
class Baseline:
    frame: object  # pandas.DataFrame with capture.COLUMNS
    labels: list[str]
    statistics: dict
    constraints: dict
    meta: dict

    @property
    def comparison_threshold(self) -> float:
        dc = self.constraints.get("monitoring_config", {}).get("distribution_constraints", {})
        return float(dc.get("comparison_threshold", drift.MIN_DISTANCE))


def rows_for_images(model_dir: Path, images: list[tuple[str, bytes]], batch: int = 256) -> list[dict]:
    """One capture-table row per image, predicted by the serving handlers."""
    model = inference.model_fn(model_dir)
    labels = list(model.labels)
    rows = []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        pixels = np.stack([inference.decode(body, "image/png", model.size) for _, body in chunk])
        probs = inference.predict_fn(pixels, model)
        for (name, body), p in zip(chunk, probs, strict=True):
            rows.append({**capture.row(p, labels, capture.image_features(body, "image/png"), None), "file": name})
    return rows


def _kll(values: np.ndarray) -> dict:
    lo, hi = float(values.min()), float(values.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-9, KLL_BUCKETS + 1)
    counts, _ = np.histogram(values, edges)
    return {
        "buckets": [
            {"lower_bound": float(a), "upper_bound": float(b), "count": float(n)}
            for a, b, n in zip(edges[:-1], edges[1:], counts, strict=True)
        ],
        # An exact "sketch": the sorted sample itself (a baseline is a few hundred values).
        "sketch": {"parameters": {"c": 0.64, "k": 2048.0}, "data": [sorted(float(v) for v in values)]},
    }


def statistics(frame, labels: list[str]) -> dict:
    """statistics.json in Model Monitor's format."""
    features = []
    n = len(frame)
    for name in (*FRACTIONAL, *INTEGRAL):
        values = frame[name].dropna().to_numpy(dtype=float)
        if not len(values):
            continue
        features.append(
            {
                "name": name,
                "inferred_type": "Fractional" if name in FRACTIONAL else "Integral",
                "numerical_statistics": {
                    "common": {"num_present": len(values), "num_missing": n - len(values)},
                    "mean": float(values.mean()),
                    "sum": float(values.sum()),
                    "std_dev": float(values.std()),
                    "min": float(values.min()),
                    "max": float(values.max()),
                    "distribution": {"kll": _kll(values)},
                },
            }
        )
    counts = frame["predicted"].value_counts()
    features.append(
        {
            "name": "predicted",
            "inferred_type": "String",
            "string_statistics": {
                "common": {"num_present": int(frame["predicted"].notna().sum()), "num_missing": 0},
                "distinct_count": float(counts.size),
                "distribution": {
                    "categorical": {"buckets": [{"value": c, "count": int(counts.get(c, 0))} for c in labels]}
                },
            },
        }
    )
    return {"version": 0.0, "dataset": {"item_count": n}, "features": features}


def table_statistics(table, sample, labels: list[str]) -> dict:
    """statistics.json of a capture read (capture.CaptureTable): count, mean, sum, standard deviation, min and max
    exact from its running sums; the distribution from its sample of rows (`sample`, pandas), counts scaled up to
    every record analysed."""
    n = table.analysed
    features = []
    for name in (*FRACTIONAL, *INTEGRAL):
        m = table.moments[name]
        if not m.n:
            continue
        values = sample[name].dropna().to_numpy(dtype=float)
        kll = _kll(values) if len(values) else {"buckets": [], "sketch": {"data": [[]]}}
        scale = m.n / max(len(values), 1)
        for bucket in kll["buckets"]:
            bucket["count"] = round(bucket["count"] * scale, 1)
        features.append(
            {
                "name": name,
                "inferred_type": "Fractional" if name in FRACTIONAL else "Integral",
                "numerical_statistics": {
                    "common": {"num_present": m.n, "num_missing": n - m.n},
                    "mean": m.mean,
                    "sum": m.total,
                    "std_dev": m.std,
                    "min": m.low,
                    "max": m.high,
                    "distribution": {"kll": kll},
                },
            }
        )
    features.append(
        {
            "name": "predicted",
            "inferred_type": "String",
            "string_statistics": {
                "common": {"num_present": n, "num_missing": 0},
                "distinct_count": float(sum(1 for v in table.classes.values() if v)),
                "distribution": {
                    "categorical": {"buckets": [{"value": c, "count": int(table.classes.get(c, 0))} for c in labels]}
                },
            },
        }
    )
    return {"version": 0.0, "dataset": {"item_count": n}, "features": features}


def constraints(labels: list[str], threshold: float) -> dict:
    """constraints.json in Model Monitor's format; the drift thresholds are drift.py's and editable here."""
    features = [
        {
            "name": name,
            "inferred_type": "Fractional" if name in FRACTIONAL else "Integral",
            "completeness": 1.0,
            "num_constraints": {"is_non_negative": True},
        }
        for name in (*FRACTIONAL, *INTEGRAL)
    ]
    features.append(
        {
            "name": "predicted",
            "inferred_type": "String",
            "completeness": 1.0,
            "string_constraints": {"domains": list(labels)},
        }
    )
    return {
        "version": 0.0,
        "features": features,
        "monitoring_config": {
            "evaluate_constraints": "Enabled",
            "emit_metrics": "Enabled",
            "datatype_check_threshold": 1.0,
            "domain_content_threshold": 1.0,
            "distribution_constraints": {
                "perform_comparison": "Enabled",
                "comparison_threshold": drift.MIN_DISTANCE,
                # Robust: a violation needs the distance above comparison_threshold AND the two-sample test
                # (KS for numbers, chi-square for the class mix) rejecting at significance `alpha`.
                "comparison_method": "Robust",
                "significance_level": drift.ALPHA,
                "low_confidence_threshold": threshold,
            },
        },
    }


def build(model_dir: Path, images: list[tuple[str, bytes]], threshold: float, model_uri: str = "") -> Baseline:
    import pandas as pd

    if not images:
        raise BaselineError("no held-out image to compute a baseline from")
    rows = rows_for_images(model_dir, images)
    frame = pd.DataFrame(rows, columns=list(capture.COLUMNS))
    labels = json.loads((model_dir / "labels.json").read_text())
    meta = {
        "model": model_uri or str(model_dir),
        "labels": labels,
        "images": len(rows),
        "threshold": threshold,
        "low_confidence_rate": float((frame["confidence"] < threshold).mean()),
    }
    return Baseline(frame, labels, statistics(frame, labels), constraints(labels, threshold), meta)


def write(baseline: Baseline, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / "statistics.json", json.dumps(baseline.statistics, indent=2) + "\n")
    write_atomic(folder / "constraints.json", json.dumps(baseline.constraints, indent=2) + "\n")
    write_atomic(folder / "baseline.json", json.dumps(baseline.meta, indent=2) + "\n")
    baseline.frame.to_csv(folder / "baseline.csv", index=False)
    return folder


def read(folder: Path) -> Baseline:
    import pandas as pd

    missing = [n for n in FILES if not (folder / n).is_file()]
    if missing:
        raise BaselineError(f"baseline folder {folder} lacks {', '.join(missing)}")
    try:
        meta = json.loads((folder / "baseline.json").read_text())
        stats = json.loads((folder / "statistics.json").read_text())
        cons = json.loads((folder / "constraints.json").read_text())
        frame = pd.read_csv(folder / "baseline.csv")
    except (ValueError, OSError) as exc:
        raise BaselineError(f"baseline folder {folder}: unreadable ({exc})") from None
    if set(capture.NUMERIC) - set(frame.columns) or "predicted" not in frame.columns or not len(frame):
        raise BaselineError(f"{folder / 'baseline.csv'} lacks the capture table's columns or rows")
    return Baseline(frame, list(meta["labels"]), stats, cons, meta)
