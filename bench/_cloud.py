"""A local cloud for a benchmark: the running one (`--use-running`) or a fresh one on a free port."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scones import localcloud
from scones.core import aws, settings

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def local_cloud(use_running: bool = False) -> Iterator[str]:
    if use_running:
        running = localcloud.status()
        if not running.running:
            raise SystemExit("no local cloud runs: `make up` first or drop --use-running")
        context = contextlib.nullcontext(running)
    else:
        context = localcloud.ephemeral("scones-bench-")
    with context as running:
        os.environ[settings.AWS_ENDPOINT_URL] = running.url
        aws.reset()
        yield running.url


def poll(sfn, arn: str, timeout_s: float = 60) -> dict:
    """An execution's description once it leaves RUNNING (or at the deadline). Polls every 5 ms, unlike
    scones.workflow.wait's backoff, so that measured latencies are not rounded up to its poll interval."""
    deadline = time.monotonic() + timeout_s
    while True:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            return described
        time.sleep(0.005)


def executions_of(sfn, machine: str) -> set[str]:
    """Every execution ARN the state machine lists."""
    pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=machine)
    return {e["executionArn"] for page in pages for e in page["executions"]}


def lost(sfn, machine: str, before: set[str], started: list[str], finished: list[str]) -> int:
    """Executions started but never seen to finish, plus those the machine does not list at all."""
    listed = executions_of(sfn, machine) - before
    return len(set(started) - set(finished)) + len(set(started) - listed)


def stage_synthetic(tmp: Path) -> Path:
    """The default synthetic set staged into tmp/staged (no upload), as `scones stage` makes it."""
    staged = tmp / "staged"
    subprocess.run(
        [sys.executable, "-m", "scones.cli", "stage", "--no-upload", "--workdir", str(staged)],
        env=dict(os.environ, SCONES_DATA_DIR=str(tmp / "data")),
        check=True,
        capture_output=True,
    )
    return staged


def train_model(staged: Path, model: Path, *args: str) -> Path:
    """training/train.py on a staged folder, as a SageMaker job runs it (channels and model dir from SM_*)."""
    env = dict(os.environ, SM_CHANNEL_TRAIN=str(staged / "train"), SM_CHANNEL_TEST=str(staged / "test"))
    env["SM_MODEL_DIR"] = str(model)
    subprocess.run(
        [sys.executable, "training/train.py", "--classes", "bicycle,motorcycle", *args],
        env=env,
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    return model
