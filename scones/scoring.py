"""A model artifact's figures on a staged split, through the artifact's own serving handlers, and its plots.

`scones evaluate` (scones/evaluate.py) downloads the split and writes metrics.json, confusion_matrix.png and
reliability.png; the classification metrics are training/metrics.py's, the same train.py reports.

Beside accuracy and ECE, what the workflow's filter makes of the answers at its threshold: coverage (the
share of in-distribution images at or above it, which the workflow passes) and the accuracy among them, and,
on held-out outliers (images of neither class), the false-pass rate per outlier kind: the share that would
pass the filter although no answer is right.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from scones.core.files import write_atomic
from scones.core.settings import DEFAULT_THRESHOLD
from scones.models import SERVING_CODE
from training.calibration import expected_calibration_error, reliability
from training.metrics import classification_metrics


def serving_handlers(model_dir: Path):
    """The artifact's own `code/inference.py`, loaded as SageMaker's container loads it (a bare model folder
    gets the file `scones train` would have put there)."""
    import importlib.util

    source = model_dir / "code" / "inference.py"
    if not source.is_file():
        source = SERVING_CODE
    name = f"scones_serving_{abs(hash(str(source)))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, source)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses inside it look their module up there
    spec.loader.exec_module(module)
    return module


def predict(model_dir: Path, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """Probabilities from the artifact's serving handlers, so evaluation measures what the endpoint answers."""
    inference = serving_handlers(model_dir)
    model = inference.model_fn(model_dir)
    return np.concatenate([inference.predict_fn(images[i : i + batch], model) for i in range(0, len(images), batch)])


def selective(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Coverage (share of images with top probability >= threshold) and the accuracy among those."""
    covered = probs.max(1) >= threshold
    correct = probs.argmax(1) == labels
    return {
        "threshold": threshold,
        "coverage": float(covered.mean()) if len(labels) else 0.0,
        "n_covered": int(covered.sum()),
        "accuracy_covered": float(correct[covered].mean()) if covered.any() else None,
    }


def false_pass(probs: np.ndarray, kinds: np.ndarray, kind_names: list[str], threshold: float) -> dict:
    """Per outlier kind: how many images reach the threshold (any class), of how many; and over all kinds."""
    passed = probs.max(1) >= threshold
    per_kind = {}
    for k, name in enumerate(kind_names):
        mine = kinds == k
        if mine.any():
            n, hits = int(mine.sum()), int(passed[mine].sum())
            per_kind[name] = {"n": n, "passed": hits, "rate": float(passed[mine].mean())}
    return {
        "threshold": threshold,
        "per_kind": per_kind,
        "n": len(kinds),
        "passed": int(passed.sum()),
        "rate": float(passed.mean()) if len(kinds) else 0.0,
    }


def evaluate(
    model_dir: Path,
    images: np.ndarray,
    labels: np.ndarray,
    outliers: tuple[np.ndarray, np.ndarray, list[str]] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> dict:
    """Metrics of the served model on labelled images; `outliers` = (images, kind index, kind names) adds
    the false-pass rates."""
    classes = json.loads((model_dir / "labels.json").read_text())
    probs = predict(model_dir, images)
    metrics = {
        "classes": classes,
        "n": len(labels),
        **classification_metrics(probs, labels, classes),
        "ece": expected_calibration_error(probs, labels),
        "mean_confidence": float(probs.max(1).mean()),
        **selective(probs, labels, threshold),
        "reliability": reliability(probs, labels),
    }
    if outliers is not None:
        outlier_images, kinds, kind_names = outliers
        metrics["false_pass"] = false_pass(predict(model_dir, outlier_images), kinds, kind_names, threshold)
    return metrics


def false_pass_table(metrics: dict) -> str:
    """The false-pass rates as aligned text lines (kind, rate, passed/n)."""
    found = metrics.get("false_pass")
    if not found:
        return "no held-out outliers staged (`scones stage --outliers auto`): false-pass rate not measured"
    width = max(len(k) for k in [*found["per_kind"], "all held-out outliers"])
    lines = [f"false-pass rate (held-out outliers at or above {found['threshold']}):"]
    for name, row in found["per_kind"].items():
        lines.append(f"  {name:<{width}}  {row['rate']:.3f}  ({row['passed']}/{row['n']})")
    lines.append(f"  {'all held-out outliers':<{width}}  {found['rate']:.3f}  ({found['passed']}/{found['n']})")
    return "\n".join(lines)


def plot_confusion(metrics: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes, matrix = metrics["classes"], np.array(metrics["confusion_matrix"])
    size = max(4.0, 0.6 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    for (i, j), n in np.ndenumerate(matrix):
        ax.text(j, i, str(n), ha="center", va="center", color="white" if n > matrix.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix (accuracy {metrics['accuracy']:.3f}, n={metrics['n']})")
    fig.tight_layout()
    return save_figure(fig, out, dpi=110)


def save_figure(fig, out: Path, dpi: int) -> Path:
    """A matplotlib figure written whole or not at all (scones.core.files), in the format of `out`'s suffix."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, dpi=dpi, format=out.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return write_atomic(out, buffer.getvalue())


def plot_reliability(metrics: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in metrics["reliability"] if r["count"]]
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5, 6), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.bar(
        [(r["lo"] + r["hi"]) / 2 for r in rows],
        [r["accuracy"] for r in rows],
        width=[r["hi"] - r["lo"] for r in rows],
        edgecolor="black",
        alpha=0.7,
        label="accuracy in bin",
    )
    ax.plot(
        [r["confidence"] for r in rows],
        [r["accuracy"] for r in rows],
        "o",
        color="darkred",
        label="(mean confidence, accuracy)",
    )
    threshold = metrics.get("threshold", DEFAULT_THRESHOLD)
    ax.axvline(threshold, color="orange", lw=1, label=f"workflow threshold {threshold}")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {metrics['ece']:.4f}, n={metrics['n']})")
    ax.legend(loc="upper left", fontsize=8)
    hist.bar(
        [(r["lo"] + r["hi"]) / 2 for r in rows],
        [r["count"] for r in rows],
        width=[r["hi"] - r["lo"] for r in rows],
        edgecolor="black",
    )
    hist.set_xlabel("confidence (top probability)")
    hist.set_ylabel("images")
    hist.set_xlim(0, 1)
    fig.tight_layout()
    return save_figure(fig, out, dpi=110)
