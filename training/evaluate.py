"""Evaluate a model artifact (model.onnx + labels.json + config.json) on a staged split, and plot it.

    python -m training.evaluate MODEL_DIR IMAGES_DIR LST_FILE [--outliers DIR LST KINDS] [--out DIR]
writes metrics.json, confusion_matrix.png and reliability.png into --out. `scones evaluate` wraps this.

Beside accuracy and ECE, what the workflow's filter makes of the answers at its threshold: coverage (the
share of in-distribution images at or above it, which the workflow passes) and the accuracy among them, and,
on held-out outliers (images of neither class), the false-pass rate per outlier kind: the share that would
pass the filter although no answer is right.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from training.calibration import expected_calibration_error, reliability

DEFAULT_THRESHOLD = 0.93  # the workflow's (scones.core.settings.DEFAULT_THRESHOLD); callers pass settings.threshold()


def load_images(images_dir: Path, lst: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for line in lst.read_text().splitlines():
        if not line.strip():
            continue
        _, label, path = line.split("\t")
        with Image.open(images_dir / path) as image:
            images.append(np.asarray(image.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR)))
        labels.append(int(float(label)))
    return np.stack(images), np.array(labels)


def predict(model_dir: Path, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """Probabilities from the serving handlers themselves, so evaluation measures what the endpoint answers."""
    from services.endpoint import inference

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
    predicted = probs.argmax(1)
    k = len(classes)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = {
        name: {
            "precision": float(confusion[i, i] / confusion[:, i].sum()) if confusion[:, i].sum() else 0.0,
            "recall": float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else 0.0,
            "support": int(confusion[i].sum()),
        }
        for i, name in enumerate(classes)
    }
    metrics = {
        "classes": classes,
        "n": len(labels),
        "accuracy": float((predicted == labels).mean()),
        "ece": expected_calibration_error(probs, labels),
        "mean_confidence": float(probs.max(1).mean()),
        **selective(probs, labels, threshold),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
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
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


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
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", type=Path)
    p.add_argument("images_dir", type=Path)
    p.add_argument("lst", type=Path)
    p.add_argument(
        "--outliers",
        nargs=3,
        metavar=("DIR", "LST", "KINDS"),
        default=None,
        help="held-out outliers: image folder, .lst, comma-separated kind names the labels index",
    )
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    p.add_argument("--out", type=Path, default=Path("."))
    args = p.parse_args(argv)
    images, labels = load_images(args.images_dir, args.lst)
    outliers = None
    if args.outliers:
        folder, lst, kinds = args.outliers
        outliers = (*load_images(Path(folder), Path(lst)), kinds.split(","))
    metrics = evaluate(args.model_dir, images, labels, outliers, args.threshold)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plot_confusion(metrics, args.out / "confusion_matrix.png")
    plot_reliability(metrics, args.out / "reliability.png")
    print(json.dumps({k: metrics[k] for k in ("accuracy", "ece", "n", "coverage", "accuracy_covered")}))
    print(false_pass_table(metrics))


if __name__ == "__main__":
    main()
