"""`scones evaluate`: a model's metrics on the staged test split, with its plots, written to a report folder."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scones import models, scoring
from scones.core.files import write_atomic
from scones.data import staged
from scones.data.lst import load_images
from scones.scoring import false_pass_table as table
from scones.stacks import filter_threshold


@dataclass
class Evaluation:
    model_uri: str
    metrics: dict
    files: list[Path]


def evaluate(
    bucket: str,
    prefix: str,
    model: str | None = None,
    out: Path | None = None,
    threshold: float | None = None,
    log: Callable[[str], None] = print,
) -> Evaluation:
    """Metrics on the staged test split, and false passes on the held-out outliers when they are staged.
    `threshold`: the given one, else the deployed stack's, else the setting."""
    threshold = filter_threshold(threshold)
    uri = model or models.latest_model_uri(bucket)
    with tempfile.TemporaryDirectory(prefix="scones-eval-") as tmp:
        model_dir = models.fetch_model(uri, Path(tmp) / "model")
        held_out = (staged.read_manifest(bucket, prefix).get("outliers") or {}).get("test")
        splits = ("test", held_out["channel"]) if held_out else ("test",)
        channels = staged.download_channels(bucket, prefix, Path(tmp) / "data", splits=splits)
        images, labels = load_images(channels["test"], channels["test_lst"] / "test.lst")
        outliers = None
        if held_out:
            name = held_out["channel"]
            found = load_images(channels[name], channels[f"{name}_lst"] / f"{name}.lst")
            outliers = (*found, held_out["kinds"])
        metrics = scoring.evaluate(model_dir, images, labels, outliers, threshold)
    out = out or models.reports_dir(uri)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
    files = [
        scoring.plot_confusion(metrics, out / "confusion_matrix.png"),
        scoring.plot_reliability(metrics, out / "reliability.png"),
        out / "metrics.json",
    ]
    log(f"model {uri} on s3://{bucket}/{prefix}/test ({metrics['n']} images), threshold {threshold}")
    return Evaluation(uri, metrics, files)


def false_pass_table(metrics: dict) -> str:
    return table(metrics)
