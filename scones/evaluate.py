"""`scones evaluate`: a model's metrics on the staged test split, with its plots, written to a report folder."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scones import models, training_job
from scones.core import settings


@dataclass
class Evaluation:
    model_uri: str
    metrics: dict
    files: list[Path]


def report_name(uri: str) -> str:
    """The report folder's name: the job of s3://…/models/<job>/output/model.tar.gz, else the file's own name."""
    parts = uri.rstrip("/").split("/")
    if uri.startswith("s3://") and len(parts) >= 4 and parts[-2] == "output":
        return parts[-3]
    path = Path(uri)
    name = path.name.removesuffix(".tar.gz") if path.name.endswith(".tar.gz") else path.name
    return path.parent.name if name == "model" and path.parent.name else name


def evaluate(
    bucket: str, prefix: str, model: str | None = None, out: Path | None = None, log: Callable[[str], None] = print
) -> Evaluation:
    from training import evaluate as metrics_of

    uri = model or models.latest_model_uri(bucket)
    with tempfile.TemporaryDirectory(prefix="scones-eval-") as tmp:
        model_dir = models.fetch_model(uri, Path(tmp) / "model")
        channels = training_job.download_channels(bucket, prefix, Path(tmp) / "data", splits=("test",))
        images, labels = metrics_of.load_images(channels["test"], channels["test_lst"] / "test.lst")
        metrics = metrics_of.evaluate(model_dir, images, labels)
    out = out or settings.data_dir() / "reports" / report_name(uri)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    files = [
        metrics_of.plot_confusion(metrics, out / "confusion_matrix.png"),
        metrics_of.plot_reliability(metrics, out / "reliability.png"),
        out / "metrics.json",
    ]
    log(f"model {uri} on s3://{bucket}/{prefix}/test ({metrics['n']} images)")
    return Evaluation(uri, metrics, files)
