"""`scones stage` → `scones train` → `scones evaluate` on the local cloud, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from scones.core import aws

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow, pytest.mark.localstack]
ROOT = Path(__file__).resolve().parents[2]


def scones(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scones.cli", *args], env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def env(local_cloud, tmp_path, unique):
    bucket = f"e2e-train-{unique}"
    aws.client("s3").create_bucket(Bucket=bucket)
    return dict(
        os.environ,
        AWS_ENDPOINT_URL=local_cloud,
        SCONES_DATA_DIR=str(tmp_path / "data"),
        SCONES_STATE_DIR=str(tmp_path / "state"),
        SCONES_BUCKET=bucket,
    )


def test_train_uploads_a_model_and_evaluate_plots_it(env, tmp_path):
    staged = scones("stage", "--train-per-class", "30", "--test-per-class", "10", env=env)
    assert staged.returncode == 0, staged.stderr
    trained = scones("train", "--epochs", "2", "--job-name", "e2e-job", "--hp", "widths=8,16,16", env=env)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "epoch 1/2" in trained.stdout and "epoch 2/2" in trained.stdout and "oe_loss=" in trained.stdout
    assert "from channel 'outliers'" in trained.stdout and "result: test_acc=" in trained.stdout
    assert "outlier exposure on " in trained.stdout  # the summary table
    assert not (tmp_path / "state" / "jobs" / "e2e-job" / "opt_ml" / "input" / "data" / "outliers_test").exists()
    assert "test accuracy" in trained.stdout and "confusion matrix" in trained.stdout
    uri = f"s3://{env['SCONES_BUCKET']}/models/e2e-job/output/model.tar.gz"
    assert f"model: {uri}" in trained.stdout

    archive = tmp_path / "model.tar.gz"
    aws.client("s3").download_file(env["SCONES_BUCKET"], "models/e2e-job/output/model.tar.gz", str(archive))
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        serving = tar.extractfile("code/inference.py").read()  # what SageMaker's PyTorch container imports
    assert {
        "model.onnx",
        "model.pt",
        "labels.json",
        "config.json",
        "metrics.json",
        "training_code/train.py",
        "code/inference.py",
        "code/requirements.txt",
    } <= names
    assert serving == (ROOT / "services" / "endpoint" / "inference.py").read_bytes()

    report = tmp_path / "report"
    evaluated = scones("evaluate", "--out", str(report), env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"model {uri}" in evaluated.stdout  # the newest model by default
    assert (report / "confusion_matrix.png").stat().st_size > 1000
    assert (report / "reliability.png").stat().st_size > 1000
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["n"] == 20 and 0 <= metrics["coverage"] <= 1
    kinds = {"lawn_mower", "rocket", "tank", "train", "noise", "flat", "tiny"}  # the held-out kinds only
    assert set(metrics["false_pass"]["per_kind"]) == kinds and metrics["false_pass"]["n"] == 7 * 10
    assert "false-pass rate (held-out outliers at or above 0.93)" in evaluated.stdout
    assert "coverage (>= 0.93)" in evaluated.stdout

    again = scones("train", "--epochs", "1", "--job-name", "e2e-job", env=env)
    assert again.returncode == 2 and "already exists" in again.stderr  # a usage error: pick another name


def test_train_without_staged_data_says_what_to_do(env):
    out = scones("train", env=env)
    assert out.returncode == 3  # NotReadyError: nothing staged yet
    assert "nothing staged" in out.stderr and "scones stage" in out.stderr


def test_train_with_other_classes_than_staged_is_refused(env):
    assert scones("stage", "--train-per-class", "5", "--test-per-class", "2", env=env).returncode == 0
    out = scones("train", "--classes", "vehicles", env=env)
    assert out.returncode == 2 and "differs from what is staged" in out.stderr
