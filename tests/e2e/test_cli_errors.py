"""Bad inputs and faults through the real `scones` entry point: each ends with one line on stderr that names
the problem and the next step, a non-zero exit, and no traceback (unless --debug)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import make_brightness_model, solid_png

pytestmark = pytest.mark.e2e
DEAD_URL = "http://127.0.0.1:9"  # the discard port: nothing listens there


@dataclass(frozen=True)
class Case:
    argv: tuple[str, ...]
    says: tuple[str, ...]  # every one of these appears in the line (the problem and the next step)
    cloud: bool = False  # run against the session's local cloud (else: nothing answers at DEAD_URL)
    code: int = 0  # 0: any non-zero exit
    env: tuple[tuple[str, str], ...] = ()


def tar_with(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad-inputs")
    (root / "random.bin").write_bytes(os.urandom(4096))
    (root / "notes.txt").write_text("not a tarball\n")
    (root / "text.png").write_text("a text file named like an image\n")
    (root / "corrupt.tar.gz").write_bytes(os.urandom(2048))
    (root / "no-labels.tar.gz").write_bytes(tar_with({"model.onnx": b"x", "config.json": b"{}"}))
    (root / "bad-labels.tar.gz").write_bytes(
        tar_with({"model.onnx": b"x", "config.json": b"{}", "labels.json": b'["only-one"]'})
    )
    (root / "empty-dir").mkdir()
    (root / "image.png").write_bytes(solid_png(230))
    make_brightness_model(root / "model")
    return root


CASES = {
    # usage
    "no command": Case((), ("the following arguments are required", "scones --help"), code=2),
    "unknown command": Case(("bogus",), ("invalid choice: 'bogus'", "scones --help"), code=2),
    "unknown target": Case(("deploy", "--target", "azure"), ("invalid choice: 'azure'", "--help"), code=2),
    "unknown class": Case(
        ("stage", "--classes", "bicycle,unicorn"), ("unknown class 'unicorn'", "valid names"), code=2
    ),
    "one class": Case(
        ("stage", "--classes", "bicycle"),
        ("--classes bicycle selects one class", "at least two", "scones stage --classes bicycle,motorcycle"),
        code=2,
    ),
    "empty class list": Case(("stage", "--classes", ","), ("no class selected", "--classes"), code=2),
    "zero images per class": Case(
        ("stage", "--train-per-class", "0"), ("--train-per-class must be at least 1",), code=2
    ),
    "missing tarball": Case(("stage", "--source", "{files}/nope.tar.gz"), ("nope.tar.gz", "cifar100"), code=1),
    "bad --hp syntax": Case(("train", "--hp", "novalue"), ("'novalue' is not NAME=VALUE", "--hp lr=0.05"), code=2),
    # checked with train.py's own parser before anything is downloaded (the cloud is down in these cases)
    "--hp of the wrong type": Case(("train", "--hp", "lr=abc"), ("--lr: invalid float value: 'abc'",), code=2),
    "unknown --hp": Case(("train", "--hp", "bogus=1"), ("unknown hyperparameter bogus", "--allow-unknown-hp"), code=2),
    "--hp out of range": Case(("train", "--epochs", "0"), ("--epochs must be >= 1",), code=2),
    "bad job name": Case(("train", "--job-name", "bad name!"), ("use 1-63 letters", "--job-name"), code=2),
    "random bytes as the source": Case(("stage", "--source", "{files}/random.bin"), ("random.bin",)),
    "a text file as the source": Case(("stage", "--source", "{files}/notes.txt"), ("notes.txt",)),
    "bad setting": Case(
        ("status",),
        ("SCONES_LOCALCLOUD_PORT='http' is not a port number", "unset"),
        code=2,
        env=(("SCONES_LOCALCLOUD_PORT", "http"),),
    ),
    "unknown target setting": Case(
        ("env",), ("SCONES_TARGET='azure'", "unset SCONES_TARGET"), code=2, env=(("SCONES_TARGET", "azure"),)
    ),
    "threshold out of range": Case(("deploy", "--threshold", "2"), ("--threshold 2.0 is outside 0..1",), code=2),
    "invoke without keys": Case(("invoke",), ("nothing to classify", "--batch N"), code=2),
    "invoke --batch 0": Case(("invoke", "--batch", "0"), ("--batch must be at least 1",), code=2),
    "cost --images 0": Case(("cost", "--images", "0"), ("must be at least 1", "scones cost --images"), code=2),
    "backfill --batch-size 0": Case(
        ("invoke", "--prefix", "s3://b/p/", "--batch-size", "0"), ("--batch-size 0 is outside 1..100",), code=2
    ),
    "backfill --batch-size 101": Case(
        ("invoke", "--prefix", "s3://b/p/", "--batch-size", "101"), ("--batch-size 101 is outside 1..100",), code=2
    ),
    "backfill --limit 0": Case(("invoke", "--prefix", "s3://b/p/", "--limit", "0"), ("--limit 0 must be",), code=2),
    "backfill with the cloud down": Case(
        ("invoke", "--prefix", "s3://b/p/"), ("the local cloud is not running", "scones up"), code=3
    ),
    "backfill with no stack": Case(
        ("invoke", "--prefix", "s3://b/p/"), ("is not deployed", "scones deploy"), cloud=True, code=3
    ),
    "monitor --compare one variant": Case(
        ("monitor", "--compare", "production"),
        ("name two variants", "scones monitor --compare production,shadow"),
        code=2,
    ),
    "monitor --compare nothing captured": Case(
        ("monitor", "--compare", "production,shadow", "--capture", "{files}/empty-dir", "--threshold", "0.93"),
        ("no capture of variant production", "variants captured there: none", "scones load --via endpoint"),
    ),
    "aws rollout without a model": Case(
        ("deploy", "--target", "aws", "--dry-run", "--rollout", "canary:10:300"),
        ("name it with --model", "--rollout canary:10:300"),
        code=2,
    ),
    "endpoint invoke without image": Case(("endpoint", "invoke"), ("needs an image file",), code=2),
    "endpoint invoke missing file": Case(("endpoint", "invoke", "{files}/nope.png"), ("no such file", "PNG"), code=2),
    "endpoint invoke a folder": Case(("endpoint", "invoke", "{files}/empty-dir"), ("is not a file",), code=2),
    # model artifacts
    "evaluate a corrupt tarball": Case(
        ("evaluate", "--model", "{files}/corrupt.tar.gz"), ("not a readable model.tar.gz", "scones train"), code=2
    ),
    "evaluate a tarball without labels": Case(
        ("evaluate", "--model", "{files}/no-labels.tar.gz"), ("lacks labels.json", "scones train"), code=2
    ),
    "evaluate one-class labels": Case(
        ("evaluate", "--model", "{files}/bad-labels.tar.gz"), ("at least two class names",), code=2
    ),
    "evaluate an empty folder": Case(
        ("evaluate", "--model", "{files}/empty-dir"), ("lacks model.onnx, labels.json, config.json",), code=2
    ),
    "evaluate a text file": Case(
        ("evaluate", "--model", "{files}/notes.txt"), ("not a readable model.tar.gz",), code=2
    ),
    # nothing running
    "stage with the cloud down": Case(("stage", "--train-per-class", "2", "--test-per-class", "1"), ("scones up",)),
    "train with the cloud down": Case(("train",), ("the local cloud is not running", "scones up"), code=3),
    "deploy with the cloud down": Case(("deploy",), ("the local cloud is not running", "scones up"), code=3),
    "invoke with the cloud down": Case(
        ("invoke", "--batch", "2"), ("the local cloud is not running", "scones up"), code=3
    ),
    "endpoint invoke with it stopped": Case(
        ("endpoint", "invoke", "{files}/image.png"), ("does not answer", "scones endpoint start"), code=3
    ),
    "graph with the cloud down": Case(("graph",), ("scones up",), code=3),
    # on a running cloud, before anything was staged or deployed
    "train with nothing staged": Case(("train",), ("scones stage",), cloud=True),
    "evaluate with nothing staged": Case(("evaluate", "--model", "{files}/model"), ("scones stage",), cloud=True),
    "deploy with nothing trained": Case(("deploy",), ("no trained model", "scones train"), cloud=True, code=3),
    "invoke with no stack": Case(("invoke", "--batch", "2"), ("is not deployed", "scones deploy"), cloud=True, code=3),
    "export with no stack": Case(("export",), ("is not deployed", "scones deploy"), cloud=True, code=3),
    "graph an unknown execution": Case(
        ("graph", "--execution", "arn:aws:states:us-east-1:123456789012:execution:nope:nope"),
        ("no such execution", "scones invoke"),
        cloud=True,
        code=3,
    ),
}


def run_scones(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scones.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def env_for(case: Case, tmp_path: Path, cloud_url: str | None) -> dict[str, str]:
    env = dict(os.environ, SCONES_STATE_DIR=str(tmp_path / "state"), SCONES_DATA_DIR=str(tmp_path / "data"))
    env["SCONES_BUCKET"] = f"errors-{tmp_path.name[-20:].lower().replace('_', '-')}"
    env["AWS_ENDPOINT_URL"] = cloud_url or DEAD_URL
    env.pop("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", None)
    env.update(dict(case.env))
    return env


@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_input_or_fault_is_one_actionable_line(name, files, tmp_path, request):
    case = CASES[name]
    cloud_url = request.getfixturevalue("local_cloud") if case.cloud else None
    argv = [a.format(files=files) for a in case.argv]
    env = env_for(case, tmp_path, cloud_url)
    if case.cloud:  # an empty bucket of its own, as `scones up` leaves it
        from scones.core import aws

        aws.client("s3").create_bucket(Bucket=env["SCONES_BUCKET"])
    out = run_scones(argv, env)
    assert out.returncode != 0, out
    assert case.code == 0 or out.returncode == case.code, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr
    line = one_error_line(out.stderr)
    assert "(next: " in line, line
    for words in case.says:
        assert words in line, (words, line)


def test_deploy_with_nothing_trained_says_so_even_when_the_endpoint_port_is_taken(tmp_path, request):
    """The missing model is the problem to name first (a demo left running holds the port); a taken port is
    named before any model is downloaded."""
    import socket

    cloud_url = request.getfixturevalue("local_cloud")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = env_for(Case(("deploy",), ()), tmp_path, cloud_url)
        env["SCONES_ENDPOINT_PORT"] = str(port)
        from scones.core import aws

        aws.client("s3").create_bucket(Bucket=env["SCONES_BUCKET"])
        out = run_scones(["deploy"], env)
    assert out.returncode == 3, (out.returncode, out.stderr)
    line = one_error_line(out.stderr)
    assert "no trained model" in line and "scones train" in line and "taken" not in line, line


def one_error_line(stderr: str) -> str:
    """The error line; progress lines may precede it on stderr, nothing may follow it."""
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("scones") and ": error: " in line]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    return errors[0]


def test_debug_shows_the_traceback(tmp_path):
    env = env_for(CASES["train with the cloud down"], tmp_path, None)
    out = run_scones(["--debug", "train"], env)
    assert out.returncode == 3
    assert "Traceback" in out.stderr and "(next: scones up)" in out.stderr.strip().splitlines()[-1]
