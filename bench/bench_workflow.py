"""Workflow benchmark: `python bench/bench_workflow.py [--seconds 60] [--clients 8]`.

On a fresh local cloud: stage the synthetic set, train a 1-epoch model (speed does not depend on accuracy),
`scones deploy --target local`, then measure
  - single-image execution latency, start to final status (p50/p99; clients poll describe_execution)
  - sustained executions/s for --seconds with --clients concurrent clients, and how many were lost
    (started but never reached a final status, or missing from list_executions)
  - a Map execution over 100 staged images
Targets (issue #6): single p50 <= 150 ms, >= 10 executions/s with 0 lost, Map-100 <= 3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _cloud import local_cloud
from bench_endpoint import quick_model

from scones import cli, endpoint, workflow
from scones.core import aws, settings
from scones.deploy import stack


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="scones-bench-wf-"))
    os.environ.update(
        {
            settings.DATA_DIR: str(tmp / "data"),
            settings.ENDPOINT_PORT: "0",
            settings.SCONES_ENDPOINT_NAME: "bench-endpoint",
        }
    )
    model = quick_model(tmp)
    with local_cloud():
        bucket = settings.bucket()
        try:
            assert cli.main(["stage", "--source", "synthetic"]) == 0
            # threshold 0.5: most executions take the success path (a 1-epoch model is rarely 0.93 sure)
            assert cli.main(["deploy", "--target", "local", "--model", str(model), "--threshold", "0.5"]) == 0
            return run(args, bucket)
        finally:
            endpoint.stop("bench-endpoint", log=lambda _m: None)


def run(args: argparse.Namespace, bucket: str) -> int:
    outputs = stack.outputs()
    single, batch = outputs["ClassifyImageStateMachineArn"], outputs["ClassifyBatchStateMachineArn"]
    sfn = aws.client("stepfunctions", max_pool_connections=64)
    keys = workflow.staged_test_keys(bucket, settings.prefix(), 200)

    def once(key: str) -> tuple[float, str]:
        t0 = time.perf_counter()
        arn = sfn.start_execution(
            stateMachineArn=single, name=f"b-{uuid.uuid4().hex}", input=json.dumps({"s3_bucket": bucket, "s3_key": key})
        )["executionArn"]
        return time.perf_counter() - t0, workflow.wait(sfn, arn)["status"]

    for key in keys[:5]:
        once(key)  # warm the Lambda workers
    latencies = []
    for key in keys[:50]:
        t0 = time.perf_counter()
        once(key)
        latencies.append((time.perf_counter() - t0) * 1000)
    print(
        f"single-image execution, start to final status (n=50): p50 {pct(latencies, 0.5):.0f} ms  "
        f"p99 {pct(latencies, 0.99):.0f} ms   target p50 <= 150 ms"
    )

    before = {
        e["executionArn"]
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=single)
        for e in page["executions"]
    }
    started, finished, statuses = [], [], {}
    lock = threading.Lock()
    stop_at = time.monotonic() + args.seconds

    def client(offset: int) -> None:
        i = offset
        while time.monotonic() < stop_at:
            key = keys[i % len(keys)]
            arn = sfn.start_execution(
                stateMachineArn=single,
                name=f"s-{uuid.uuid4().hex}",
                input=json.dumps({"s3_bucket": bucket, "s3_key": key}),
            )["executionArn"]
            with lock:
                started.append(arn)
            status = workflow.wait(sfn, arn, timeout_s=120)["status"]
            with lock:
                finished.append(arn)
                statuses[status] = statuses.get(status, 0) + 1
            i += args.clients

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    listed = {
        e["executionArn"]
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=single)
        for e in page["executions"]
    } - before
    lost = len(set(started) - set(finished)) + len(set(started) - listed)
    print(
        f"sustained, {args.clients} clients for {elapsed:.0f} s: {len(finished) / elapsed:.1f} executions/s "
        f"({len(started)} started, {len(finished)} finished: {statuses}), lost {lost}   "
        f"target >= 10/s, 0 lost"
    )

    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        described, rows = workflow.run_batch(sfn, batch, bucket, keys[:100])
        times.append(time.perf_counter() - t0)
        assert described["status"] == "SUCCEEDED" and len(rows) == 100, described
    ok = sum(r.status == "SUCCEEDED" for r in rows)
    print(
        f"Map over 100 images (n=3): median {statistics.median(times):.2f} s "
        f"(runs {', '.join(f'{t:.2f}' for t in times)}; "
        f"last run {ok} SUCCEEDED, {100 - ok} FAILED)   target <= 3 s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
