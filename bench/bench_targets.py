"""The same operations on the embedded cloud and on LocalStack, in one run: `python bench/bench_targets.py`.

Starts each target on a free port in a state dir of its own, one after the other (never both at once: they
would share the CPU), runs the same boto3 calls and the same deployed workflow on each, stops it, and prints
a table with the LocalStack / embedded ratio (above 1: LocalStack is slower):
  - S3 put and get of a 2 KB object (p50)
  - a 3-Pass-state execution, start to SUCCEEDED (p50; clients poll describe_execution every 5 ms)
  - a Map over 100 Pass items (median of 3)
  - a warm Lambda invoke through boto3 (p50)
  - the single-image workflow (`scones deploy`, serialize → classify → filter), start to final status (p50)
  - the Map workflow over 100 images (median of 2)
LocalStack runs in host mode without Docker (`scones up --stack localstack`: its venv is created the first time).
The model is the tests' brightness model (answers known in advance); our own model server is the endpoint on both.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import _report  # noqa: E402
import _scratch  # noqa: E402
from _cloud import poll  # noqa: E402
from _stats import pct  # noqa: E402
from helpers import make_brightness_model  # noqa: E402  (tests/helpers.py: a model with known answers)

from scones import (  # noqa: E402
    cli,
    endpoint,
    localcloud,
    localstack,
    stacks,
    workflow,
)
from scones.core import aws, settings  # noqa: E402
from scones.selftest import create_function, ensure_role  # noqa: E402

ECHO = "def handler(event, context):\n    return event\n"


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def png(value: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (value, value, value)).save(buffer, format="PNG")
    return buffer.getvalue()


@contextlib.contextmanager
def target(name: str) -> Iterator[str]:
    """A fresh cloud of the target on a free port, in its own state dir, with AWS_ENDPOINT_URL pointed at it."""
    os.environ[settings.STATE_DIR] = str(_scratch.folder(f"scones-bench-{name}-"))
    os.environ[settings.TARGET] = name
    os.environ.pop(settings.SAGEMAKER_RUNTIME_URL, None)
    if name == "local":
        started = localcloud.up(port=0, log=lambda _m: None)
        stop = lambda: localcloud.down(log=lambda _m: None)  # noqa: E731
    else:
        t0 = time.perf_counter()
        started = localstack.up(port=0, log=print)
        print(f"LocalStack ({started.mode} mode) answered {time.perf_counter() - t0:.1f} s after `up`")
        stop = lambda: localstack.down(log=lambda _m: None)  # noqa: E731
    os.environ[settings.AWS_ENDPOINT_URL] = started.url
    aws.reset()
    try:
        yield started.url
    finally:
        endpoint.stop(settings.endpoint_name(), log=lambda _m: None)
        stop()


def measure(name: str, model: Path, n: int) -> dict[str, float]:
    results: dict[str, float] = {}
    suffix = uuid.uuid4().hex[:6]
    s3 = aws.client("s3", max_pool_connections=32)
    bucket = f"bench-{suffix}"
    os.environ[settings.BUCKET] = bucket
    s3.create_bucket(Bucket=bucket)
    body = os.urandom(2048)
    puts = [timed(lambda i=i: s3.put_object(Bucket=bucket, Key=f"o/{i}", Body=body)) for i in range(n)]
    gets = [timed(lambda i=i: s3.get_object(Bucket=bucket, Key=f"o/{i}")["Body"].read()) for i in range(n)]
    results["S3 put 2 KB, p50 (ms)"] = pct(puts[5:], 0.5) * 1000
    results["S3 get 2 KB, p50 (ms)"] = pct(gets[5:], 0.5) * 1000

    sfn, role = aws.client("stepfunctions", max_pool_connections=32), ensure_role()
    passes = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "Next": "C"}}}
    passes["States"]["C"] = {"Type": "Pass", "End": True}
    machine = sfn.create_state_machine(name=f"p3-{suffix}", definition=json.dumps(passes), roleArn=role)

    def run(arn: str, payload: dict) -> dict:
        described = poll(
            sfn,
            sfn.start_execution(stateMachineArn=arn, name=uuid.uuid4().hex, input=json.dumps(payload))["executionArn"],
        )
        assert described["status"] == "SUCCEEDED", described
        return described

    three = [timed(lambda: run(machine["stateMachineArn"], {"x": 1})) for _ in range(n // 5 + 3)]
    results["3-Pass-state execution, p50 (ms)"] = pct(three[3:], 0.5) * 1000
    mapped = {
        "StartAt": "M",
        "States": {
            "M": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "End": True,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "P",
                    "States": {"P": {"Type": "Pass", "End": True}},
                },
            }
        },
    }
    map_machine = sfn.create_state_machine(name=f"m100-{suffix}", definition=json.dumps(mapped), roleArn=role)
    runs = [timed(lambda: run(map_machine["stateMachineArn"], {"items": list(range(100))})) for _ in range(3)]
    results["Map over 100 Pass items, median (s)"] = statistics.median(runs)

    lam = aws.client("lambda", read_timeout=120)
    fn = create_function(f"echo-{suffix}", {"app.py": ECHO})
    invokes = [timed(lambda: lam.invoke(FunctionName=fn, Payload=b'{"x": 1}')) for _ in range(n // 2 + 5)]
    results["warm Lambda invoke, p50 (ms)"] = pct(invokes[5:], 0.5) * 1000

    for i in range(100):
        s3.put_object(Bucket=bucket, Key=f"img/{i:03d}.png", Body=png(230 if i % 2 else 25))
    assert cli.main(["deploy", "--target", name, "--model", str(model)]) == 0
    outputs = stacks.outputs()
    keys = [f"img/{i:03d}.png" for i in range(100)]
    singles = []
    for key in keys[: n // 5 + 3]:
        t0 = time.perf_counter()
        (row,) = workflow.run_single(sfn, outputs["ClassifyImageStateMachineArn"], bucket, [key])
        singles.append(time.perf_counter() - t0)
        assert row.status == "SUCCEEDED", row
    results["single-image workflow, p50 (ms)"] = pct(singles[3:], 0.5) * 1000
    batches = []
    for _ in range(2):
        t0 = time.perf_counter()
        described, rows = workflow.run_batch(sfn, outputs["ClassifyBatchStateMachineArn"], bucket, keys)
        batches.append(time.perf_counter() - t0)
        assert described["status"] == "SUCCEEDED" and all(r.status == "SUCCEEDED" for r in rows), described
    results["Map workflow over 100 images, median (s)"] = statistics.median(batches)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="samples for the S3 p50s (fewer for the others)")
    args = parser.parse_args()
    tmp = _scratch.folder("scones-bench-targets-")
    os.environ.update({settings.ENDPOINT_PORT: "0", settings.SCONES_ENDPOINT_NAME: "bench-targets"})
    model = make_brightness_model(tmp / "model")
    measured = {}
    for name in ("local", "localstack"):
        with target(name) as url:
            print(f"measuring {name} at {url} ...", flush=True)
            measured[name] = measure(name, model, args.n)
    print(f"\n{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}\n")
    table = _report.Table("operation", "embedded", "LocalStack (host mode)", "ratio LocalStack / embedded")
    for key, value in measured["local"].items():
        other = measured["localstack"][key]
        table.row(key, f"{value:.3g}", f"{other:.3g}", f"{other / value:.1f}×")
    print(table.markdown())
    _report.write("targets", [table])
    return 0


if __name__ == "__main__":
    sys.exit(main())
