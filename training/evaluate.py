"""Evaluate a model artifact (model.onnx + labels.json + config.json) on a staged split, and plot it.

    python -m training.evaluate MODEL_DIR IMAGES_DIR LST_FILE [--out DIR]
writes metrics.json, confusion_matrix.png and reliability.png into --out. `scones evaluate` wraps this.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from training.calibration import expected_calibration_error, reliability


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


def serving_handlers(model_dir: Path):
    """The artifact's own `code/inference.py`, loaded as SageMaker's container loads it."""
    import importlib.util

    source = model_dir / "code" / "inference.py"
    if not source.is_file():
        raise FileNotFoundError(f"{model_dir} has no code/inference.py: is it a model.tar.gz from `scones train`?")
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


def evaluate(model_dir: Path, images: np.ndarray, labels: np.ndarray) -> dict:
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
    return {
        "classes": classes,
        "n": len(labels),
        "accuracy": float((predicted == labels).mean()),
        "ece": expected_calibration_error(probs, labels),
        "mean_confidence": float(probs.max(1).mean()),
        "share_confident_0.93": float((probs.max(1) >= 0.93).mean()),
        "accuracy_when_confident_0.93": float((predicted == labels)[probs.max(1) >= 0.93].mean())
        if (probs.max(1) >= 0.93).any()
        else None,
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
        "reliability": reliability(probs, labels),
    }


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
    ax.axvline(0.93, color="orange", lw=1, label="workflow threshold 0.93")
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
    p.add_argument("--out", type=Path, default=Path("."))
    args = p.parse_args(argv)
    images, labels = load_images(args.images_dir, args.lst)
    metrics = evaluate(args.model_dir, images, labels)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plot_confusion(metrics, args.out / "confusion_matrix.png")
    plot_reliability(metrics, args.out / "reliability.png")
    print(json.dumps({k: metrics[k] for k in ("accuracy", "ece", "n")}))


if __name__ == "__main__":
    main()
