"""Benchmarks of the embedded local cloud: `make bench` or `python bench/bench_localcloud.py [--duration S]`.

Measures, against a local cloud it starts on a free port (or the running one with --use-running):
  - warm Lambda invoke latency through boto3 (p50/p99)
  - a 3-Lambda sequential Step Functions execution, start to SUCCEEDED (p50/p99)
  - sustained executions/s of that machine for --duration seconds with --threads clients: every final status
    counted, lost executions (started, never final or never listed) and client threads that died
  - a Map state over 100 trivial items
Targets (issue #2): invoke p50 <= 15 ms, 3-step p50 <= 150 ms, >= 10 exec/s, Map-100 <= 3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _cloud import executions_of, local_cloud
from _cloud import lost as lost_executions
from _cloud import poll as wait
from _report import Report
from _stats import pct

from scones.core import aws, settings
from scones.selftest import create_function, ensure_role

CODE = "def handler(event, context):\n    return event\n"


def task(fn_arn: str, next_state: str | None) -> dict:
    state = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "OutputPath": "$.Payload",
        "Parameters": {"FunctionName": fn_arn, "Payload.$": "$"},
    }
    return {**state, "Next": next_state} if next_state else {**state, "End": True}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of sustained load (default 30)")
    parser.add_argument("--threads", type=int, default=8, help="concurrent clients for the sustained run (default 8)")
    parser.add_argument("--use-running", action="store_true", help="use the local cloud `make up` started")
    args = parser.parse_args()

    with local_cloud(args.use_running):
        return run(args)


def run(args: argparse.Namespace) -> int:
    report = Report("localcloud")
    lam = aws.client("lambda", max_pool_connections=64)
    sfn = aws.client("stepfunctions", max_pool_connections=64)
    suffix = uuid.uuid4().hex[:6]
    role = ensure_role()
    fn = create_function(f"bench-{suffix}", {"app.py": CODE})
    print(
        f"local cloud: {os.environ[settings.AWS_ENDPOINT_URL]} ({os.cpu_count()} CPUs; Lambda concurrency cap "
        f"{settings.lambda_concurrency()} per function); sustained: {args.threads} clients × {args.duration:.0f} s"
    )

    for _ in range(10):
        lam.invoke(FunctionName=fn, Payload=b'{"x": 1}')
    times = []
    for _ in range(200):
        t0 = time.perf_counter()
        lam.invoke(FunctionName=fn, Payload=b'{"x": 1}')
        times.append((time.perf_counter() - t0) * 1000)
    report.result(
        "warm Lambda invoke of an echo function (boto3, n=200)",
        f"p50 {pct(times, 0.5):.1f} ms, p99 {pct(times, 0.99):.1f} ms",
        "p50 <= 15 ms",
    )

    three = {"StartAt": "A", "States": {"A": task(fn, "B"), "B": task(fn, "C"), "C": task(fn, None)}}
    machine = sfn.create_state_machine(name=f"bench3-{suffix}", definition=json.dumps(three), roleArn=role)[
        "stateMachineArn"
    ]
    for _ in range(3):
        wait(sfn, sfn.start_execution(stateMachineArn=machine, input='{"x": 1}')["executionArn"])
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        done = wait(sfn, sfn.start_execution(stateMachineArn=machine, input='{"x": 1}')["executionArn"])
        times.append((time.perf_counter() - t0) * 1000)
        assert done["status"] == "SUCCEEDED", done
    report.result(
        "3 echo Lambdas in one execution, start to SUCCEEDED (n=30)",
        f"p50 {pct(times, 0.5):.0f} ms, p99 {pct(times, 0.99):.0f} ms",
        "p50 <= 150 ms",
    )

    before = executions_of(sfn, machine)
    started: list[str] = []
    finished: list[str] = []
    statuses: dict[str, int] = {}
    deaths: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + args.duration

    def client_loop() -> None:
        try:
            while time.monotonic() < stop_at:
                arn = sfn.start_execution(stateMachineArn=machine, input='{"x": 1}')["executionArn"]
                with lock:
                    started.append(arn)
                status = wait(sfn, arn)["status"]
                with lock:
                    if status != "RUNNING":
                        finished.append(arn)
                    statuses[status] = statuses.get(status, 0) + 1
        except Exception as exc:  # a client that dies is counted, not silently missing from the rate
            with lock:
                deaths.append(f"{type(exc).__name__}: {str(exc)[:120]}")

    t0 = time.monotonic()
    threads = [threading.Thread(target=client_loop) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    lost = lost_executions(sfn, machine, before, started, finished)
    succeeded = statuses.get("SUCCEEDED", 0)
    report.result(
        f"sustained executions of it ({args.threads} clients, {elapsed:.0f} s)",
        f"{succeeded / elapsed:.1f} SUCCEEDED/s; "
        f"{len(started)} started, final statuses {dict(sorted(statuses.items()))}, {lost} lost; "
        f"client threads died {len(deaths)}/{args.threads}{': ' + '; '.join(deaths) if deaths else ''}",
        ">= 10 exec/s, 0 lost",
    )

    mapped = {
        "StartAt": "M",
        "States": {
            "M": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrency": 0,
                "End": True,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "T",
                    "States": {"T": task(fn, None)},
                },
            }
        },
    }
    map_machine = sfn.create_state_machine(name=f"bench-map-{suffix}", definition=json.dumps(mapped), roleArn=role)[
        "stateMachineArn"
    ]
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        done = wait(
            sfn,
            sfn.start_execution(stateMachineArn=map_machine, input=json.dumps({"items": list(range(100))}))[
                "executionArn"
            ],
        )
        times.append(time.perf_counter() - t0)
        assert done["status"] == "SUCCEEDED" and json.loads(done["output"]) == list(range(100)), done
    report.result(
        "Map over 100 echo items, start to SUCCEEDED (n=3, output checked)",
        f"median {statistics.median(times):.2f} s (runs: {', '.join(f'{t:.2f}' for t in times)})",
        "<= 3 s",
    )
    report.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
