"""The quality gate: a candidate model gets no traffic unless it is at least as good as the model serving now.

Both models are scored (scones/scoring.py, through each artifact's own serving handlers) on the staged test
split and, when staged, the held-out outliers. The candidate is refused, in one line naming the worst figure,
when it is worse than production by more than a margin (settings.gate_margins()):
  accuracy  lower by more than $SCONES_GATE_ACCURACY_DROP    ECE        higher by more than $SCONES_GATE_ECE_RISE
  coverage  lower by more than $SCONES_GATE_COVERAGE_DROP    false-pass higher by more than $SCONES_GATE_FALSE_PASS_RISE
(coverage and false-pass at the workflow's threshold). A candidate with other labels than production is refused
by name: the workflow would route by classes it does not know. `scones deploy --force` skips the gate.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scones import models, scoring
from scones.core.errors import SconesError
from scones.data import staged
from scones.data.lst import load_images

WORSE_WHEN_LOWER = ("accuracy", "coverage")  # the others (ece, false_pass) are worse when higher


class GateError(SconesError):
    """The candidate is worse than the model serving now, or answers other classes."""

    next_default = "scones evaluate --model CANDIDATE, or scones deploy --force to deploy it anyway"


@dataclass
class Split:
    """What both models are scored on: labelled test images and, when staged, held-out outliers."""

    images: np.ndarray
    labels: np.ndarray
    outliers: tuple[np.ndarray, np.ndarray, list[str]] | None = None


def staged_split(bucket: str, prefix: str, workdir: Path) -> Split:
    """The staged test split and held-out outliers, downloaded under `workdir` (what `scones evaluate` reads)."""
    held_out = (staged.read_manifest(bucket, prefix).get("outliers") or {}).get("test")
    splits = ("test", held_out["channel"]) if held_out else ("test",)
    channels = staged.download_channels(bucket, prefix, workdir, splits=splits)
    images, labels = load_images(channels["test"], channels["test_lst"] / "test.lst")
    outliers = None
    if held_out:
        name = held_out["channel"]
        found = load_images(channels[name], channels[f"{name}_lst"] / f"{name}.lst")
        outliers = (*found, held_out["kinds"])
    return Split(images, labels, outliers)


def figures(model_dir: Path, split: Split, threshold: float) -> dict[str, float]:
    """The four figures the gate compares."""
    m = scoring.evaluate(model_dir, split.images, split.labels, split.outliers, threshold)
    found = {"accuracy": m["accuracy"], "ece": m["ece"], "coverage": m["coverage"]}
    if "false_pass" in m:
        found["false_pass"] = m["false_pass"]["rate"]
    return found


def worse(candidate: dict[str, float], production: dict[str, float], margins: dict[str, float]) -> list[str]:
    """Each figure on which the candidate is worse by more than its margin, worst (by excess) first."""
    found = []
    for name, margin in margins.items():
        if name not in candidate or name not in production:
            continue
        loss = production[name] - candidate[name] if name in WORSE_WHEN_LOWER else candidate[name] - production[name]
        if loss > margin + 1e-12:
            direction = "lower" if name in WORSE_WHEN_LOWER else "higher"
            line = (
                f"{name} {candidate[name]:.4f} vs {production[name]:.4f} in production ({direction} by {loss:.4f}, "
                f"margin {margin:g})"
            )
            found.append((loss - margin, line))
    return [line for _, line in sorted(found, reverse=True)]


def check(
    candidate_dir: Path,
    production_dir: Path,
    split: Split,
    threshold: float,
    margins: dict[str, float],
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, float]]:
    """GateError unless the candidate may get traffic; returns both models' figures."""
    ours, theirs = models.labels_of(candidate_dir), models.labels_of(production_dir)
    if ours != theirs:
        raise GateError(
            f"the candidate answers {', '.join(ours)} but production answers {', '.join(theirs)}: other labels",
            "deploy a model trained on the same classes (or scones deploy --force)",
        )
    production = figures(production_dir, split, threshold)
    candidate = figures(candidate_dir, split, threshold)
    shown = "  ".join(f"{k} {candidate[k]:.4f} (production {production[k]:.4f})" for k in candidate if k in production)
    log(f"quality gate on {len(split.labels)} test images at threshold {threshold}: {shown}")
    found = worse(candidate, production, margins)
    if found:
        raise GateError(f"the candidate is worse than production: {found[0]}")
    return {"candidate": candidate, "production": production}


def check_staged(
    candidate_dir: Path,
    production_dir: Path,
    bucket: str,
    prefix: str,
    threshold: float,
    margins: dict[str, float],
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="scones-gate-") as tmp:
        split = staged_split(bucket, prefix, Path(tmp))
        return check(candidate_dir, production_dir, split, threshold, margins, log)
