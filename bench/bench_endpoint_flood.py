"""Endpoint flood: `python bench/bench_endpoint_flood.py --model DIR [--workers 2] [--requests 200] [--side 2048]
[--concurrency 16] [--capture-mb 256] [--when-full block]`.

Serves DIR with capture pointed at an S3 that does not answer (as when the cloud is down), floods it with big
RGBA PNGs (side × side, at most SCONES_MAX_PAYLOAD_MB each) from `concurrency` clients, samples every worker's
RSS all along, then reports per worker: peak RSS, RSS after the burst (malloc_trim's effect), against
SCONES_CAPTURE_MAX_MB; and the answers (200 / 503 capture full / others) with the stats' capture_lost.
Not a timing benchmark: it checks memory stays bounded. Not yet run on a quiet machine (figures to come).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def big_png(side: int, limit: int) -> bytes:
    """An RGBA PNG of side² pixels under `limit` bytes: noise in a corner, a gradient elsewhere (decodes to side²×4)."""
    pixels = np.zeros((side, side, 4), np.uint8)
    pixels[..., 0] = np.linspace(0, 255, side, dtype=np.uint8)[None, :]
    pixels[..., 3] = 255
    noise = max(1, min(side, int((limit * 0.8 / 4) ** 0.5)))
    pixels[:noise, :noise] = np.random.default_rng(0).integers(0, 256, (noise, noise, 4), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--side", type=int, default=2048)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--capture-mb", type=float, default=256)
    p.add_argument("--when-full", default="block", choices=("block", "drop"))
    p.add_argument("--port", type=int, default=18181)
    args = p.parse_args()
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # nothing answers: every upload fails, the buffer fills
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "SCONES_CAPTURE_MAX_MB": str(args.capture_mb),
        "SCONES_CAPTURE_WHEN_FULL": args.when_full,
        "SCONES_CAPTURE_BLOCK_S": "2",
    }
    cmd = [sys.executable, "-m", "services.endpoint", "--model", str(args.model), "--port", str(args.port)]
    server = subprocess.Popen([*cmd, "--workers", str(args.workers)], cwd=ROOT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{args.port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(url + "/ping", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        with urllib.request.urlopen(url + "/_scones/stats") as r:
            pids = json.loads(r.read())["worker_pids"]
        body = big_png(args.side, 6 * 1024 * 1024 - 1)
        print(f"{len(body) / 1e6:.1f} MB PNG of {args.side}² RGBA, {args.requests} requests, {args.workers} workers")
        peak, stop = dict.fromkeys(pids, 0), threading.Event()

        def sample() -> None:
            while not stop.is_set():
                for pid in pids:
                    with contextlib.suppress(psutil.Error):
                        peak[pid] = max(peak[pid], psutil.Process(pid).memory_info().rss)
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()

        def post(_i: int) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=120)
            try:
                conn.request("POST", "/invocations", body=body, headers={"Content-Type": "image/png"})
                response = conn.getresponse()
                response.read()
                return response.status
            except OSError:
                return -1

        with ThreadPoolExecutor(args.concurrency) as pool:
            answers = Counter(pool.map(post, range(args.requests)))
        time.sleep(2)
        stop.set()
        sampler.join()
        after = {pid: psutil.Process(pid).memory_info().rss for pid in pids}
        with urllib.request.urlopen(url + "/_scones/stats") as r:
            stats = json.loads(r.read())
        bound = args.capture_mb * 2**20
        for pid in pids:
            print(
                f"worker {pid}: peak RSS {peak[pid] / 2**20:.0f} MiB, after {after[pid] / 2**20:.0f} MiB "
                f"(capture bound {bound / 2**20:.0f} MiB)"
            )
        print(f"answers {dict(answers)}; capture_lost {stats['capture_lost']}; refused {stats['capture_refused_full']}")
    finally:
        os.killpg(server.pid, 15)
        server.wait(60)


if __name__ == "__main__":
    main()
