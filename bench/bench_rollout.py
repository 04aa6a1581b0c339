"""Rollout benchmark: `python bench/bench_rollout.py [--model DIR | --epochs 5] [--period 10] [--requests 2000]
[--smoke] [--no-write]`.

On a fresh local cloud, one endpoint (metrics every second) serving --model (default: train one on the synthetic
set), under steady traffic (load.Steady, one request in flight, textured images):
  - rollback: a broken candidate (scones/broken_model.py: it fails on every textured image) rolled out by
    canary:50:<long>, its 5xx alarm at --period s; the time from its first bad answer to the last answer not from
    the old fleet (100 % back), against the target of 2 evaluation periods + 5 s; and the requests lost (no
    answer at all), target 0
  - a promotion: the same model (another folder) by canary:50:<2 periods>; requests failed or lost, target 0
  - shadow mirroring: --requests sequential requests to production alone, then with a 100 % Shadow of the same
    model, then alone again: production's p50 as the client sees it (added latency, target <= 0.5 ms), the
    endpoint's CPU per request (its process tree's user + system seconds) and its peak RSS (the process tree's
    resident memory, sampled every 0.1 s during the phase), with and without the shadow
--smoke: a trivial model instead of a trained one (no training), 1-s periods, 100 requests: checks the bench runs,
prints its figures and leaves docs/benchmarks.md alone. Not run on a quiet machine yet: no figure in the docs.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _scratch
import numpy as np
from _cloud import local_cloud
from _report import Report
from _serving import tree_cpu_s, tree_rss_mb
from _stats import pct
from bench_workflow import train_model
from PIL import Image

from scones import broken_model, endpoint, load, rollout
from scones.core import aws, settings
from scones.core import target as targets
from services.endpoint.variants import PRODUCTION, SHADOW, Variant


def textured(n: int) -> list[bytes]:
    """Noise PNGs of mid brightness: every model answers them, the broken one fails on each."""
    rng, out = np.random.default_rng(0), []
    for _ in range(n):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(40, 200, (32, 32, 3), dtype=np.uint8)).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


def rollback_figures(traffic: load.Steady) -> tuple[float | None, int, int]:
    """(seconds from the first error answer to the last answer not from the old fleet, failed, lost)."""
    answers = traffic.answers
    bad = [t for t, o in answers if not o.ok and o.answered]
    off = [t for t, o in answers if not (o.ok and o.variant == PRODUCTION)]
    counts = traffic.counts()
    back = (max(off) - min(bad)) if bad else None
    return back, counts["failed"], counts["lost"]


class PeakRss:
    """The endpoint's process tree's largest resident memory (MB) while the block runs, sampled every 0.1 s."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.done = pid, tree_rss_mb(pid), threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self) -> None:
        while not self.done.wait(0.1):
            self.peak = max(self.peak, tree_rss_mb(self.pid))

    def __enter__(self) -> PeakRss:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, tree_rss_mb(self.pid))


def sequential(url: str, name: str, bodies: list[bytes], count: int, pid: int) -> tuple[list[float], float, float]:
    """`count` requests one after another on one connection: (latencies in ms, server CPU ms per request, the
    server's peak RSS in MB)."""
    with PeakRss(pid) as rss:
        latencies, cpu_ms = _sequential(url, name, bodies, count, pid)
    return latencies, cpu_ms, rss.peak


def _sequential(url: str, name: str, bodies: list[bytes], count: int, pid: int) -> tuple[list[float], float]:
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    path = f"/endpoints/{name}/invocations"
    latencies, cpu0 = [], tree_cpu_s(pid)
    for i in range(count):
        started = time.perf_counter()
        conn.request("POST", path, body=bodies[i % len(bodies)], headers={"Content-Type": "image/png"})
        response = conn.getresponse()
        response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            raise SystemExit(f"request {i} answered {response.status}")
    time.sleep(0.5)  # the mirrored requests of the last ones finish
    conn.close()
    return latencies, (tree_cpu_s(pid) - cpu0) / count * 1000


def quiet(_message: str) -> None:
    pass


def trivial_model(folder: Path) -> Path:
    """For --smoke: answers every image of mid brightness (the bright-failing kind of broken model), no training."""
    return broken_model.make(folder, fails_on="bright")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a model folder (default: train one on the synthetic set)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--period", type=int, default=10, help="the alarms' period, seconds")
    parser.add_argument("--requests", type=int, default=2000, help="per shadow phase")
    parser.add_argument("--smoke", action="store_true", help="tiny and untrained; prints only")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    if args.smoke:
        args.period, args.requests, args.no_write = 1, 100, True
    tmp = _scratch.folder("scones-bench-rollout-")
    name = "bench-rollout"
    os.environ.update(
        {
            settings.DATA_DIR: str(tmp / "data"),
            settings.STATE_DIR: str(tmp / "state"),
            settings.ENDPOINT_PORT: "0",
            settings.SCONES_ENDPOINT_NAME: name,
            settings.ENDPOINT_METRICS_S: "1",
            settings.ROLLOUT_PERIOD_S: str(args.period),
            settings.CAPTURE_BUCKET: f"bench-rollout-{int(time.time())}",
        }
    )
    if args.model:
        model = Path(args.model)
    elif args.smoke:
        model = trivial_model(tmp / "model")
    else:
        model = train_model(tmp, args.epochs)
    report = Report("rollout")
    bodies = textured(32)
    with local_cloud():
        aws.ensure_bucket(os.environ[settings.CAPTURE_BUCKET], quiet)
        found = endpoint.start(str(model), name, port=0, log=quiet)
        try:
            targets.activate("local")
            send = load.endpoint_sender(name, 1)
            alarms = rollout.ensure_alarms(rollout.default_alarms(name)[:1])  # the 5xx alarm
            ran = (
                f"ran: model {model}, alarm period {args.period} s, metrics every 1 s, {found.workers} workers, "
                f"{args.requests} requests per shadow phase, {os.cpu_count()} CPUs"
            )
            print(ran, flush=True)
            # a broken candidate, rolled back
            broken = broken_model.make(tmp / "broken", like=model)
            with load.Steady(send, bodies, gap_s=0.02) as traffic:
                try:
                    rollout.run(name, str(broken), rollout.parse(f"canary:50:{args.period * 20}"), alarms, quiet)
                    raise SystemExit("the broken candidate was promoted: its alarm never fired")
                except rollout.RolledBackError:
                    pass
                time.sleep(1)
            back, failed, lost = rollback_figures(traffic)
            report.result(
                f"first bad answer to 100 % back on the old model (alarm period {args.period} s)",
                f"{back:.1f} s ({failed} error answers)" if back is not None else "no bad answer seen",
                f"<= {2 * args.period + 5} s",
            )
            report.result("requests lost during the rollback", f"{lost} of {len(traffic.answers)}", "0")
            # the same model, promoted
            same = shutil.copytree(model, tmp / "same")
            with load.Steady(send, bodies, gap_s=0.02) as traffic:
                rollout.run(name, str(same), rollout.parse(f"canary:50:{2 * args.period}"), alarms, quiet)
                time.sleep(1)
            counts = traffic.counts()
            report.result(
                "requests failed or lost during a promoted rollout",
                f"{counts['failed']} failed, {counts['lost']} lost of {counts['sent']}",
                "0",
            )
            # shadow mirroring's cost on production
            url = endpoint.status(name).url or ""
            alone1, cpu_alone1, rss_alone1 = sequential(url, name, bodies, args.requests, endpoint.status(name).pid)
            production = endpoint.variants(name)[0]
            shadow = Variant(SHADOW, shutil.copytree(model, tmp / "shadow"), 0.0, 100.0, "shadow")
            endpoint.serve_variants(name, [production, shadow], log=quiet)
            pid = endpoint.status(name).pid
            mirrored, cpu_mirrored, rss_mirrored = sequential(url, name, bodies, args.requests, pid)
            endpoint.serve_variants(name, [Variant(PRODUCTION, production.model_dir, 1.0, 0.0, "")], log=quiet)
            alone2, cpu_alone2, rss_alone2 = sequential(url, name, bodies, args.requests, endpoint.status(name).pid)
            p50_alone = (pct(alone1, 0.5) + pct(alone2, 0.5)) / 2
            report.result(
                "production p50 added by a 100 % shadow (sequential requests)",
                f"{pct(mirrored, 0.5) - p50_alone:+.2f} ms ({pct(mirrored, 0.5):.2f} vs {pct(alone1, 0.5):.2f} and "
                f"{pct(alone2, 0.5):.2f} ms alone)",
                "<= 0.5 ms",
            )
            cpu_alone = (cpu_alone1 + cpu_alone2) / 2
            report.result(
                "endpoint CPU per request, without / with the shadow",
                f"{cpu_alone:.2f} / {cpu_mirrored:.2f} ms ({cpu_mirrored / cpu_alone:.2f}x)",
            )
            rss_alone = max(rss_alone1, rss_alone2)
            report.result(
                "endpoint peak RSS (its process tree), without / with the shadow",
                f"{rss_alone:.0f} / {rss_mirrored:.0f} MB ({rss_mirrored - rss_alone:+.0f} MB)",
            )
            if not args.no_write:
                report.write(notes=ran)
            return 0
        finally:
            endpoint.stop(name, log=quiet)


if __name__ == "__main__":
    raise SystemExit(main())
