"""`scones stage` as a user runs it, against the local cloud."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from functools import partial

import pytest

from scones.core import aws

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.localstack]


@pytest.fixture
def env(local_cloud, tmp_path, unique):
    bucket = f"e2e-stage-{unique}"
    aws.client("s3").create_bucket(Bucket=bucket)
    return dict(os.environ, AWS_ENDPOINT_URL=local_cloud, SCONES_DATA_DIR=str(tmp_path / "data"), SCONES_BUCKET=bucket)


def scones(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scones.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_stage_synthetic_then_rerun_uploads_nothing(env):
    args = ("stage", "--source", "synthetic", "--train-per-class", "20", "--test-per-class", "5", "--explore")
    first = scones(*args, env=env)
    assert first.returncode == 0, first.stderr
    # 50 PNGs + 2 .lst; outliers: 9 training kinds × 20 + 7 held-out kinds × 5 PNGs + 2 .lst
    assert "uploaded 269, unchanged 0" in first.stdout
    assert "outliers for training: 180 in outliers/" in first.stdout
    assert "held-out outliers (evaluation only): 35 in outliers_test/" in first.stdout
    assert "logistic regression on raw pixels: test accuracy" in first.stdout
    assert "contact sheet:" in first.stdout and "drawing synthetic images" in first.stderr
    second = scones(*args[:-1], env=env)
    assert second.returncode == 0, second.stderr
    assert "nothing changed, 0 objects uploaded" in second.stdout
    objects = aws.client("s3").list_objects_v2(Bucket=env["SCONES_BUCKET"], Prefix="data/")
    assert objects["KeyCount"] == 270


def test_stage_outliers_none_removes_the_outlier_channels(env):
    args = ("stage", "--source", "synthetic", "--train-per-class", "4", "--test-per-class", "2")
    assert scones(*args, env=env).returncode == 0
    s3 = aws.client("s3")
    keys = lambda: {o["Key"] for o in s3.list_objects_v2(Bucket=env["SCONES_BUCKET"], Prefix="data/")["Contents"]}  # noqa: E731
    assert {"data/outliers.lst", "data/outliers_test.lst"} <= keys()
    none = scones(*args, "--outliers", "none", env=env)
    assert none.returncode == 0, none.stderr
    assert "outliers: none staged" in none.stdout
    assert not any(key.startswith("data/outliers") for key in keys())
    assert len(keys()) == 12 + 2 + 1  # PNGs, .lst files, manifest
    bad = scones(*args, "--outliers", "some", env=env)
    assert bad.returncode == 2 and "--outliers" in bad.stderr


def test_stage_a_local_tarball_with_vehicles_selection_fails_on_missing_class(env, cifar_tarball):
    out = scones("stage", "--source", str(cifar_tarball), "--classes", "vehicles", "--no-upload", env=env)
    assert out.returncode == 2
    assert "no image of" in out.stderr or "no image for" in out.stderr


def test_stage_cifar100_download_with_wrong_checksum_is_rejected(env, cifar_tarball):
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(cifar_tarball.parent))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        env = dict(env, SCONES_CIFAR100_URL=f"http://127.0.0.1:{httpd.server_address[1]}/{cifar_tarball.name}")
        out = scones("stage", "--source", "cifar100", env=env)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert out.returncode == 1
    assert "md5" in out.stderr and "is not the expected eb9058c3a382ffc7106e4002c42a8d85" in out.stderr
    assert "downloading CIFAR-100" in out.stderr


def test_unknown_class_exit_2_lists_names(env):
    out = scones("stage", "--classes", "bicycle,hovercraft", env=env)
    assert out.returncode == 2 and "'hovercraft'" in out.stderr and "motorcycle" in out.stderr
