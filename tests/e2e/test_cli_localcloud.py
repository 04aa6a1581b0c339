"""`scones up/status/down` as a user runs them, each in its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def scones(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scones.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


WARM = """
from scones.core import aws
from scones import selftest
name = selftest._lambda("e2e")
assert "FunctionError" not in aws.client("lambda").invoke(FunctionName=name, Payload=b"{}")
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_up_twice_then_down_leaves_no_process(tmp_path):
    env = dict(os.environ, SCONES_STATE_DIR=str(tmp_path), SCONES_LOCALCLOUD_PORT="0")
    env.pop("AWS_ENDPOINT_URL", None)
    try:
        check_up_twice_then_down(tmp_path, env)
    finally:
        scones("down", env=env)  # whatever happened above, leave no process behind


def check_up_twice_then_down(tmp_path, env):
    first = scones("up", env=env)
    assert first.returncode == 0, first.stderr
    record = json.loads((tmp_path / "localcloud.json").read_text())
    second = scones("up", env=env)
    assert second.returncode == 0 and "already running" in second.stdout
    assert json.loads((tmp_path / "localcloud.json").read_text())["pid"] == record["pid"]

    # Warm a Lambda worker so that `down` has children to stop too.
    env["AWS_ENDPOINT_URL"] = record["url"]
    warm = subprocess.run(
        [sys.executable, "-c", WARM],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert warm.returncode == 0, warm.stderr
    status = scones("status", env=env)
    assert status.returncode == 0 and "running at" in status.stdout
    with urllib.request.urlopen(record["url"] + "/_scones/health") as response:
        workers = json.loads(response.read())["lambda_workers"]
    assert workers, "expected warm Lambda workers"

    down = scones("down", env=env)
    assert down.returncode == 0, down.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(p) for p in [record["pid"], *workers]):
        time.sleep(0.1)
    assert not alive(record["pid"])
    assert not [p for p in workers if alive(p)]
    assert not (tmp_path / "localcloud.json").exists()
    assert scones("status", env=env).returncode == 3
    assert "not running" in scones("down", env=env).stdout


def test_env_prints_exports_for_eval(tmp_path):
    env = dict(os.environ, SCONES_STATE_DIR=str(tmp_path), SCONES_BUCKET="b1")
    env.pop("AWS_ENDPOINT_URL", None)
    out = scones("env", env=env)
    assert out.returncode == 0
    assert "export SCONES_BUCKET=b1" in out.stdout.splitlines()
    script = f'{out.stdout}\necho "$AWS_ENDPOINT_URL $SCONES_BUCKET"'
    check = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    url, bucket = check.stdout.split()
    assert url.startswith("http://127.0.0.1:") and bucket == "b1"


def test_bad_setting_is_a_one_line_error(tmp_path):
    env = dict(os.environ, SCONES_STATE_DIR=str(tmp_path), SCONES_TARGET="azure")
    out = scones("env", env=env)
    assert out.returncode == 2
    assert "SCONES_TARGET='azure' is not one of local, localstack, aws" in out.stderr
