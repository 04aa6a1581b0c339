"""`scones train`: run training/train.py exactly as a SageMaker training job would, without Docker.

The job gets an /opt/ml-like tree under the state dir (`jobs/<job>/input/data/<channel>`, `model/`, `output/`),
the channels are downloaded from the staged prefix in S3 (`train`, `test`, and `outliers` when staged: the
held-out `outliers_test` never reaches training), SM_* variables are set, the script runs in a subprocess
whose `METRICS {json}` / `RESULT {json}` lines are parsed, and `model/` is packed into
`s3://<bucket>/models/<job>/output/model.tar.gz` as SageMaker does.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from scones.core import aws, service, settings
from scones.core.errors import SconesError, UsageError
from scones.data import staged
from scones.models import add_serving_code
from training import train

TRAIN_SCRIPT = settings.ROOT / "training" / "train.py"
METRICS_PREFIX, RESULT_PREFIX = "METRICS ", "RESULT "


class TrainingJobError(SconesError):
    """The job could not start or the training script failed (its failure reason is in the message)."""

    next_default = "scones train --help"


@dataclass
class TrainingResult:
    job_name: str
    model_uri: str
    model_dir: Path
    metrics: dict
    seconds: float


def default_job_name() -> str:
    return "scones-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def model_uri(bucket: str, job_name: str) -> str:
    return f"s3://{bucket}/{settings.MODELS_PREFIX}/{job_name}/output/model.tar.gz"


def parse_line(line: str) -> tuple[str, dict] | None:
    """`METRICS {json}` → ("METRICS", {...}); `RESULT {json}` → ("RESULT", {...}); any other line → None."""
    for prefix in (METRICS_PREFIX, RESULT_PREFIX):
        if line.startswith(prefix):
            try:
                fields = json.loads(line[len(prefix) :])
            except ValueError:
                return None
            return (prefix.strip(), fields) if isinstance(fields, dict) else None
    return None


def _format(fields: dict) -> str:
    return "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())


def format_metrics(fields: dict) -> str:
    rest = {k: v for k, v in fields.items() if k not in ("epoch", "epochs")}
    return f"epoch {fields.get('epoch', '?')}/{fields.get('epochs', '?')}  " + _format(rest)


def check_hyperparameters(hps: dict[str, str], allow_unknown: bool = False) -> None:
    """Refuse unknown names, bad types and out-of-range values with train.py's own parser, before any work."""
    import contextlib
    import io

    parser = train.build_parser()
    known = sorted(a.dest for a in parser._actions if a.dest != "help")
    unknown = sorted(set(hps) - set(known))
    if unknown and not allow_unknown:
        raise UsageError(
            f"unknown hyperparameter {', '.join(unknown)}; valid: {', '.join(known)}",
            "scones train --hp NAME=VALUE with one of those names (or --allow-unknown-hp)",
        )
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in {"classes": "a,b", **hps}.items() if k in known]
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            train.parse_args(argv)
    except SystemExit:
        reason = (errors.getvalue().strip().splitlines() or ["invalid value"])[-1].split("error: ", 1)[-1]
        raise UsageError(f"--hp: {reason}", "scones train --hp NAME=VALUE with a value of the right type") from None
    except train.TrainingInputError as exc:
        raise UsageError(f"--hp: {exc}", "scones train --hp NAME=VALUE within the allowed range") from None


def job_folder(job_name: str) -> Path:
    if not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", job_name):
        raise UsageError(
            f"job name {job_name!r}: use 1-63 letters, digits and hyphens (SageMaker's rule)", "pass another --job-name"
        )
    job_dir = settings.state_dir() / "jobs" / job_name
    if job_dir.exists():
        raise UsageError(f"job {job_name!r} already exists ({job_dir})", "pass another --job-name")
    return job_dir


def sm_environment(job_name: str, channels: dict[str, Path], model_dir: Path, output_dir: Path, hps: dict) -> dict:
    """The SM_* variables SageMaker's training toolkit sets for script mode."""
    env = dict(os.environ)
    env.update({f"SM_CHANNEL_{name.upper()}": str(path) for name, path in channels.items()})
    env.update(
        {
            "SM_MODEL_DIR": str(model_dir),
            "SM_OUTPUT_DIR": str(output_dir),
            "SM_OUTPUT_DATA_DIR": str(output_dir / "data"),
            "SM_CHANNELS": json.dumps(sorted(channels)),
            "SM_HPS": json.dumps(hps),
            "SM_CURRENT_HOST": "algo-1",
            "SM_HOSTS": json.dumps(["algo-1"]),
            "SM_NUM_CPUS": str(os.cpu_count() or 1),
            "SM_NUM_GPUS": "0",
            "SM_TRAINING_ENV": json.dumps({"job_name": job_name, "hyperparameters": hps}),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def stream(argv: list[str], env: dict, log_path: Path, log) -> int:
    """Run train.py, keep its whole output in the job log, show its METRICS/RESULT lines; returns its exit code."""
    with open(log_path, "w") as job_log:
        proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=settings.ROOT
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            job_log.write(line)
            parsed = parse_line(line.strip())
            if parsed and parsed[0] == "METRICS":
                log("  " + format_metrics(parsed[1]))
            elif parsed:
                log("  result: " + _format(parsed[1]))
            elif line.startswith(("training on", "outlier exposure", "error:", "ignoring")):
                log("  " + line.rstrip())
        return proc.wait()


def package(model_dir: Path, archive: Path, bucket: str, job_name: str) -> str:
    """model/ (with its serving code) → model.tar.gz → s3://<bucket>/models/<job>/output/, as SageMaker does."""
    add_serving_code(model_dir)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(model_dir)), recursive=False)
    uri = model_uri(bucket, job_name)
    aws.client("s3").upload_file(str(archive), bucket, uri.split("/", 3)[3])
    return uri


def run(
    bucket: str,
    prefix: str,
    job_name: str | None = None,
    epochs: int | None = None,
    classes: list[str] | None = None,
    hyperparameters: dict | None = None,
    log=print,
    allow_unknown: bool = False,
) -> TrainingResult:
    started = time.perf_counter()
    job_name = job_name or default_job_name()
    hps = dict(hyperparameters or {})
    if epochs is not None:
        hps["epochs"] = epochs
    check_hyperparameters(hps, allow_unknown)  # before any download
    job_dir = job_folder(job_name)
    manifest = staged.read_manifest(bucket, prefix)
    trained_classes = staged.staged_classes(manifest, classes, bucket, prefix)
    ml = job_dir / "opt_ml"
    channels = staged.download_channels(bucket, prefix, ml / "input" / "data", staged.channel_splits(manifest))
    model_dir, output_dir = ml / "model", ml / "output"
    model_dir.mkdir(parents=True)
    (output_dir / "data").mkdir(parents=True)
    hps = {"classes": ",".join(trained_classes), **hps}
    argv = [sys.executable, str(TRAIN_SCRIPT)]
    for key, value in hps.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    log(f"training job {job_name}: {' '.join(argv[1:])}")
    log_path = job_dir / "train.log"
    code = stream(argv, sm_environment(job_name, channels, model_dir, output_dir, hps), log_path, log)
    if code != 0:
        failure = output_dir / "failure"
        reason = (
            failure.read_text().strip() if failure.exists() else f"exit status {code}: {service.log_tail(log_path, 3)}"
        )
        raise TrainingJobError(
            f"training job {job_name} failed: {reason}", f"see {log_path}, fix, run scones train again"
        )
    uri = package(model_dir, job_dir / "model.tar.gz", bucket, job_name)
    metrics = json.loads((model_dir / "metrics.json").read_text())
    return TrainingResult(job_name, uri, model_dir, metrics, time.perf_counter() - started)


def metrics_table(metrics: dict, classes: list[str]) -> str:
    calibrated = (
        f"temperature cross-fitted on {metrics['temperature_folds']} folds"
        if metrics.get("temperature_folds")
        else f"{metrics['n_calibration']} held out for calibration"
    )
    lines = [
        f"test accuracy {metrics['accuracy']:.4f} on {metrics['n_test']} images "
        f"(trained on {metrics['n_train']}, {calibrated})",
        f"ECE {metrics['ece_before']:.4f} before → {metrics['ece_after']:.4f} after temperature scaling "
        f"(T = {metrics['temperature']:.3f}); NLL {metrics['nll_before']:.4f} → {metrics['nll_after']:.4f}",
        f"{metrics['epochs']} epochs on {metrics['device']}: {metrics['train_seconds']:.1f} s training, "
        f"{metrics['wall_seconds']:.1f} s in the script",
    ]
    if metrics.get("outlier_exposure"):
        seen = metrics.get("outlier_pass_rate_seen_kinds")
        lines.append(
            f"outlier exposure on {metrics['n_outliers']} images (weight {metrics['oe_weight']}); coverage "
            f"{metrics['coverage']:.3f} at {metrics['threshold']}; outliers of the trained kinds passing: "
            f"{seen:.3f} (held-out kinds: `scones evaluate`)"
        )
    elif "outlier_exposure" in metrics:
        lines.append("no outlier exposure (no outliers staged): images of neither class may pass the threshold")
    width = max(len(c) for c in [*classes, "class"])
    lines.append(f"{'class':<{width}}  precision  recall  support")
    for name in classes:
        row = metrics["per_class"][name]
        lines.append(f"{name:<{width}}  {row['precision']:>9.3f}  {row['recall']:>6.3f}  {row['support']:>7}")
    lines.append("confusion matrix (rows: true, columns: predicted)")
    for name, row in zip(classes, metrics["confusion_matrix"], strict=True):
        lines.append(f"{name:<{width}}  " + " ".join(f"{n:>5}" for n in row))
    return "\n".join(lines)
