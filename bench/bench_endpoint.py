"""Endpoint benchmark: `python bench/bench_endpoint.py [--model DIR] [--seconds S]`.

Serves a model (default: a 1-epoch model of the default architecture trained on the synthetic set, since
speed does not depend on accuracy) on a fresh local cloud with capture on, and compares:
  - latency at concurrency 1 (p50/p99, HTTP keep-alive client) with the raw in-process forward latency
    (decode + preprocess + onnxruntime for one image)
  - images/s at concurrency 8 with raw in-process images/s at the same batch policy (decode each image,
    then onnxruntime on batches of the mean size the server formed)
Targets (issue #5): served/raw throughput >= 0.8; latency overhead <= 5 ms at p50 and p99.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _cloud import local_cloud

from scones import endpoint
from services.endpoint import inference


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def images(n: int = 64) -> list[bytes]:
    out = []
    for i in range(n):
        pixels = np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def quick_model(tmp: Path) -> Path:
    env = dict(os.environ, SCONES_DATA_DIR=str(tmp / "data"))
    staged = tmp / "staged"
    subprocess.run(
        [sys.executable, "-m", "scones.cli", "stage", "--no-upload", "--workdir", str(staged)],
        env=env,
        check=True,
        capture_output=True,
    )
    model = tmp / "model"
    env.update(SM_CHANNEL_TRAIN=str(staged / "train"), SM_CHANNEL_TEST=str(staged / "test"), SM_MODEL_DIR=str(model))
    subprocess.run(
        [sys.executable, "training/train.py", "--classes", "bicycle,motorcycle", "--epochs", "1"],
        env=env,
        check=True,
        capture_output=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return model


def served(url: str, bodies: list[bytes], concurrency: int, seconds: float) -> tuple[list[float], int, float]:
    host, port = url.split("//")[1].split(":")
    latencies: list[float] = []
    count = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(offset: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        local, i = [], offset
        while time.perf_counter() < stop_at:
            body = bodies[i % len(bodies)]
            t0 = time.perf_counter()
            conn.request("POST", "/invocations", body=body, headers={"Content-Type": "image/png"})
            response = conn.getresponse()
            response.read()
            local.append((time.perf_counter() - t0) * 1000)
            assert response.status == 200, response.status
            i += 1
        with lock:
            latencies.extend(local)
            count[0] += len(local)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, count[0], time.perf_counter() - t0


def served_wrk(url: str, body: bytes, concurrency: int, seconds: float, tmp: Path) -> tuple[float, float] | None:
    """Requests/s and p50 ms from `wrk` (a C load generator: far less client CPU than Python), if installed."""
    import re
    import shutil

    if shutil.which("wrk") is None:
        return None
    (tmp / "body.png").write_bytes(body)
    script = tmp / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "image/png"\n'
        f'local f = io.open("{tmp / "body.png"}", "rb")\nwrk.body = f:read("*all")\nf:close()\n'
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{int(seconds)}s", "--latency", "-s", str(script), url + "/invocations"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p50.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"wrk saw {errors.group(1)} error responses:\n{out}")
    return rps, float(p50.group(1)) * scale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="scones-bench-ep-"))
    model_dir = args.model or quick_model(tmp)
    bodies = images()
    with local_cloud() as _url:
        found = endpoint.start(str(model_dir), "bench-endpoint", port=0, log=lambda _m: None)
        try:
            for _ in range(2):
                served(found.url, bodies, 1, 1.0)  # warm up
            lat1, n1, _s1 = served(found.url, bodies, 1, args.seconds)
            before = json.loads(urlopen(found.url + "/_scones/stats"))
            lat8, n8, s8 = served(found.url, bodies, 8, args.seconds)
            after = json.loads(urlopen(found.url + "/_scones/stats"))
            wrk = served_wrk(found.url, bodies[0], 8, args.seconds, tmp)
        finally:
            endpoint.stop("bench-endpoint", log=lambda _m: None)
    mean_batch = (after["batched_images"] - before["batched_images"]) / max(1, after["batches"] - before["batches"])

    model = inference.model_fn(model_dir)  # raw, in this process, after the server is gone
    for body in bodies[:16]:
        inference.predict_fn(inference.input_fn(body, "image/png"), model)
    raw1 = []
    for i in range(500):
        t0 = time.perf_counter()
        inference.predict_fn(inference.input_fn(bodies[i % len(bodies)], "image/png"), model)
        raw1.append((time.perf_counter() - t0) * 1000)
    batch = max(1, round(mean_batch))
    rates = []
    for _ in range(3):  # the median of three rounds: single rounds vary by ±10 % on this machine
        t0, done = time.perf_counter(), 0
        while time.perf_counter() - t0 < args.seconds / 3:
            decoded = np.stack([inference.decode(bodies[(done + k) % len(bodies)], "image/png") for k in range(batch)])
            inference.predict_fn(decoded, model)
            done += batch
        rates.append(done / (time.perf_counter() - t0))
    raw_rate = statistics.median(rates)

    print(f"model: {model_dir}")
    print(
        f"raw in-process forward, 1 image (decode+preprocess+onnxruntime): p50 {pct(raw1, 0.5):.2f} ms  "
        f"p99 {pct(raw1, 0.99):.2f} ms"
    )
    print(
        f"served, concurrency 1 ({n1} requests): p50 {pct(lat1, 0.5):.2f} ms  p99 {pct(lat1, 0.99):.2f} ms  "
        f"→ overhead p50 {pct(lat1, 0.5) - pct(raw1, 0.5):.2f} ms, p99 {pct(lat1, 0.99) - pct(raw1, 0.99):.2f} ms"
        f"   target <= 5 ms"
    )
    print(
        f"served, concurrency 8 ({n8} requests in {s8:.1f} s): {n8 / s8:.0f} images/s, mean batch {mean_batch:.1f}, "
        f"p50 {statistics.median(lat8):.2f} ms"
    )
    print(
        f"raw in-process at batch {batch}: {raw_rate:.0f} images/s (median of {', '.join(f'{r:.0f}' for r in rates)})"
    )
    print(f"served / raw throughput (Python client): {n8 / s8 / raw_rate:.2f}   target >= 0.8")
    if wrk:
        print(
            f"served, concurrency 8 with wrk (C client, 1 thread): {wrk[0]:.0f} images/s, p50 {wrk[1]:.2f} ms "
            f"→ served / raw throughput: {wrk[0] / raw_rate:.2f}   target >= 0.8"
        )
    else:
        print("(wrk is not installed: `apt-get install wrk` adds a C client that takes less of the shared CPU)")
    print(f"(client and server share the machine's {os.cpu_count()} cores)")
    return 0


def urlopen(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url) as response:
        return response.read().decode()


if __name__ == "__main__":
    sys.exit(main())
