"""`scones evaluate`: a model's metrics on the staged test split, with its plots, written to a report folder."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scones import models, scoring, stacks
from scones.core import settings
from scones.core.errors import UsageError
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


class LabelsDifferError(UsageError):
    """The model answers in other classes than the ones staged (or deployed): its figures would mean nothing."""


def pick_model(bucket: str, model: str | None, target: str, log: Callable[[str], None] = print) -> str:
    """--model, else the model deployed on `target` (models.deployed_model_uri), else the newest trained one; says
    which it picked, in one line."""
    if model:
        log(f"evaluating {model} (--model)")
        return model
    uri, why = models.served_or_newest(bucket, target, log)
    deployed = models.deployed_model_uri(target) is not None
    log(f"evaluating {uri}: {why} (pass --model to {'evaluate another' if deployed else 'choose'})")
    return uri


def check_labels(uri: str, labels: list[str], staged_: list[str], deployed: list[str] | None, where: str) -> None:
    """Refuse, naming both lists, a model whose labels are not the staged classes (in order), or (when the model was
    not chosen by --model) not the deployed stack's."""
    if labels != staged_:
        raise LabelsDifferError(
            f"model {uri} answers in {','.join(labels)} but {where} stages {','.join(staged_)}",
            f"scones stage --classes {','.join(labels)}, or pass --model with a model of {','.join(staged_)}",
        )
    if deployed is not None and labels != deployed:
        raise LabelsDifferError(
            f"model {uri} answers in {','.join(labels)} but the deployed stack answers in {','.join(deployed)}",
            "pass --model to evaluate it anyway, or scones deploy --model it",
        )


def evaluate(
    bucket: str,
    prefix: str,
    model: str | None = None,
    out: Path | None = None,
    threshold: float | None = None,
    log: Callable[[str], None] = print,
    target: str | None = None,
) -> Evaluation:
    """Metrics on the staged test split, and false passes on the held-out outliers when they are staged.
    `model`: the given one, else the deployed one on `target` (default: the setting), else the newest.
    `threshold`: the given one, else the deployed stack's, else the setting."""
    threshold = filter_threshold(threshold)
    uri = pick_model(bucket, model, target or settings.target(), log)
    with tempfile.TemporaryDirectory(prefix="scones-eval-") as tmp:
        model_dir = models.fetch_model(uri, Path(tmp) / "model")  # a bad artifact is named before any S3 call
        manifest = staged.read_manifest(bucket, prefix)
        deployed = None if model else stacks.deployed_labels()
        check_labels(uri, models.labels_of(model_dir), manifest["classes"], deployed, f"s3://{bucket}/{prefix}/")
        held_out = (manifest.get("outliers") or {}).get("test")
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
