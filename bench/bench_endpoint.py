"""Endpoint benchmark: `python bench/bench_endpoint.py [--model DIR] [--seconds S] [--workers 1,2] [--rounds 3]`.

Serves a model (default: a 1-epoch model of the default architecture trained on the synthetic set, since
speed does not depend on accuracy) on a fresh local cloud, with capture on and with capture off, and measures:
  - latency at concurrency 1 (p50/p99, HTTP keep-alive Python client) minus the raw in-process forward
    latency (decode + preprocess + onnxruntime for one image); target <= 5 ms
  - images/s at concurrency 8 with wrk (2 threads, 8 connections, the same 32×32 PNG) over the raw rate of
    one process that decodes, preprocesses and runs batches of 8 on that PNG; target >= 0.8
  - capture on / capture off images/s; target >= 0.95
  - capture completeness: records in S3 = successful responses, exactly, across every worker
Raw and served runs alternate within each round and each ratio is taken within its round (the machine is
shared: absolute rates drift between rounds); the medians of the rounds are printed. CPU ms per image (the
server's whole process tree; raw: this process) are printed too: on a machine shared with other work they
say what the scheduler's share does not.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _scratch
from _cloud import local_cloud, stage_synthetic, train_model
from _report import Report
from _serving import raw_rate, wrk, wrk_available, wrk_script
from _stats import pct

from scones import endpoint
from scones.core import aws, service, settings
from services.endpoint import inference
from services.endpoint.capture import parse_lines


def random_png(seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def quick_model(tmp: Path) -> tuple[Path, bytes]:
    """A 1-epoch model on the synthetic set, and one of its real 32×32 test PNGs."""
    staged = stage_synthetic(tmp)
    model = train_model(staged, tmp / "model", "--epochs", "1")
    return model, sorted((staged / "test").glob("*.png"))[0].read_bytes()


def python_client(url: str, body: bytes, concurrency: int, seconds: float) -> tuple[list[float], int]:
    """Latencies (ms) of keep-alive clients; returns (latencies, failed clients). A client that fails stops
    and is counted: its requests never silently go missing from the rate."""
    host, port = url.split("//")[1].split(":")
    latencies: list[float] = []
    failed = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client() -> None:
        local = []
        try:
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                conn.request("POST", "/invocations", body=body, headers={"Content-Type": "image/png"})
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"status {response.status}")
                local.append((time.perf_counter() - t0) * 1000)
        except Exception as exc:  # counted, reported
            print(f"client failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            with lock:
                failed[0] += 1
        with lock:
            latencies.extend(local)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, failed[0]


def listed(values: list[float], digits: int = 0) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values)


def stats(url: str) -> dict:
    return service.get_json(url + "/_scones/stats", timeout_s=10)[1] or {}


def captured_records(bucket: str, name: str) -> int:
    s3, count = aws.client("s3"), 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"datacapture/{name}/"):
        for obj in page.get("Contents", []):
            count += len(parse_lines(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode()))
    return count


def start(model_dir: Path, name: str, workers: int, capture: bool) -> tuple[str, int]:
    saved = os.environ.get(settings.CAPTURE_PERCENT)
    os.environ[settings.CAPTURE_PERCENT] = "100" if capture else "0"
    try:
        found = endpoint.start(str(model_dir), name, port=0, log=lambda _m: None, workers=workers)
        return found.url, found.pid
    finally:
        os.environ.pop(settings.CAPTURE_PERCENT) if saved is None else os.environ.update(
            {settings.CAPTURE_PERCENT: saved}
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--seconds", type=float, default=8.0, help="per wrk run and per raw run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image", type=Path, default=None, help="the PNG to send (default: a test image)")
    parser.add_argument("--workers", default=None, help="worker counts to compare, e.g. 1,2 (default: the default)")
    args = parser.parse_args()
    if not wrk_available():
        raise SystemExit(
            "wrk is not installed: `apt-get install wrk` (a C load generator; the targets are stated with it)"
        )
    tmp = _scratch.folder("scones-bench-ep-")
    model_dir, body = quick_model(tmp) if args.model is None else (args.model, random_png())
    body = args.image.read_bytes() if args.image else body
    script = wrk_script(body, tmp)
    counts = (
        [int(w) for w in args.workers.split(",")]
        if args.workers
        else [settings.endpoint_workers() or len(os.sched_getaffinity(0))]
    )
    configs = [(w, capture) for w in counts for capture in (True, False)]
    bucket = f"bench-capture-{int(time.time())}"
    rates: dict = {c: [] for c in configs}
    cpu: dict = {c: [] for c in configs}
    raw_cpu: list[float] = []
    latency: dict = {c: [] for c in configs}
    raws: list[float] = []
    with local_cloud() as _url:
        aws.client("s3").create_bucket(Bucket=bucket)
        os.environ[settings.CAPTURE_BUCKET] = bucket
        names = {c: f"bench-ep-{c[0]}w-{'on' if c[1] else 'off'}" for c in configs}
        urls: dict = {}
        try:
            pids: dict = {}
            for c in configs:
                urls[c], pids[c] = start(model_dir, names[c], *c)
            first = configs[0]
            python_client(urls[first], body, 1, 2.0)  # warm up
            lat1, failed1 = python_client(urls[first], body, 1, args.seconds)

            model = inference.model_fn(model_dir)  # the raw baseline, in this process
            for _ in range(20):
                inference.predict_fn(inference.input_fn(body, "image/png"), model)
            raw1 = []
            for _ in range(500):
                t0 = time.perf_counter()
                inference.predict_fn(inference.input_fn(body, "image/png"), model)
                raw1.append((time.perf_counter() - t0) * 1000)
            for c in configs:
                wrk(urls[c] + "/invocations", script, 8, 2)  # warm up
            for _ in range(args.rounds):
                rate, cpu_ms = raw_rate(model, inference.decode, inference.predict_fn, body, args.seconds)
                raws.append(rate)
                raw_cpu.append(cpu_ms)
                for c in configs:
                    result = wrk(urls[c] + "/invocations", script, 8, args.seconds, server_pid=pids[c])
                    if result.non_2xx or result.socket_errors:
                        raise SystemExit(
                            f"{names[c]}: {result.non_2xx} error responses, {result.socket_errors} socket errors"
                        )
                    rates[c].append(result.rps)
                    cpu[c].append((result.cpu_ms_per_request(), result.client_cpu_s / result.requests * 1000))
                    latency[c].append((result.p50_ms, result.p99_ms))
            before = {c: stats(urls[c]) for c in configs}
        finally:
            for c in configs:
                endpoint.stop(names[c], log=lambda _m: None)  # SIGTERM: every worker flushes its capture
        complete = {}
        for c in configs:
            if c[1]:
                answered = before[c]["requests"] - before[c]["errors"]
                complete[c] = (captured_records(bucket, names[c]), answered, before[c])

    report = Report("endpoint")
    print(f"model: {model_dir}; body: a {len(body)}-byte 32×32 PNG; {os.cpu_count()} cores shared by client and server")
    r50, r99, s50, s99 = pct(raw1, 0.5), pct(raw1, 0.99), pct(lat1, 0.5), pct(lat1, 0.99)
    report.result("raw in-process, 1 image (decode+preprocess+onnxruntime)", f"p50 {r50:.2f} ms, p99 {r99:.2f} ms")
    report.result(
        f"served, concurrency 1 ({len(lat1)} requests, {first[0]} workers, capture on, {failed1} failed clients)",
        f"p50 {s50:.2f} ms, p99 {s99:.2f} ms → overhead over raw p50 {s50 - r50:+.2f} ms, p99 {s99 - r99:+.2f} ms",
        "overhead <= 5 ms",
    )
    raw_ms = statistics.median(raw_cpu)
    report.result(
        "raw in-process, batches of 8 on one process",
        f"{listed(raws)} images/s (median {statistics.median(raws):.0f}); CPU {raw_ms:.3f} ms per image",
    )
    print(f"concurrency 8, wrk -t2 -c8 -d{args.seconds:.0f}s, per round:")
    for c in configs:
        ratios = [r / raw for r, raw in zip(rates[c], raws, strict=True)]
        p50 = statistics.median(p for p, _ in latency[c])
        p99 = statistics.median(p for _, p in latency[c])
        server_ms = statistics.median(s for s, _ in cpu[c])
        client_ms = statistics.median(k for _, k in cpu[c])
        report.result(
            f"concurrency 8 (wrk -t2 -c8), {c[0]} workers, capture {'on' if c[1] else 'off'}: served ÷ raw",
            f"{listed(rates[c])} images/s (median {statistics.median(rates[c]):.0f}), "
            f"p50 {p50:.2f} ms p99 {p99:.2f} ms; "
            f"served/raw {listed(ratios, 2)} → median {statistics.median(ratios):.2f}; CPU per image: server "
            f"{server_ms:.3f} ms, wrk {client_ms:.3f} ms; raw CPU / server CPU {raw_ms / server_ms:.2f}",
            ">= 0.8",
        )
    for w in counts:
        ratios = [a / b for a, b in zip(rates[(w, True)], rates[(w, False)], strict=True)]
        report.result(
            f"{w} workers: capture on ÷ off",
            f"{listed(ratios, 2)} → median {statistics.median(ratios):.2f}",
            ">= 0.95",
        )
    for c, (records, answered, st) in complete.items():
        report.result(
            f"capture completeness, {c[0]} workers",
            f"{records} records in S3 for {answered} successful responses "
            f"({'exact' if records == answered else 'MISMATCH'}); per worker {st.get('requests_per_worker')}, "
            f"mean batch {st.get('mean_batch_size', 0):.1f}",
            "exact",
        )
    report.write()
    return 0 if all(r == a for r, a, _ in complete.values()) and not failed1 else 1


if __name__ == "__main__":
    sys.exit(main())
