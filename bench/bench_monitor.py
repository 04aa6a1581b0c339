"""Monitoring benchmark: `python bench/bench_monitor.py [--model DIR] [--records N] [--seeds S] [--skip-big]`.

Measures (issue #11), on a fresh local cloud:
  1. `scones monitor` over N capture records (default 100,000, ~300 MB of JSON lines in S3): wall time and
     peak memory (max RSS of the command's process). Targets: <= 30 s, <= 2 GB on 2 cores.
  2. `scones load --mode stream --rate 50 --duration 20 --via endpoint`: the generator's own CPU use (user +
     system seconds of its process ÷ wall seconds) against a local endpoint.
  3. False-alarm rate over S seeds of clean traffic (default 20) and detection rate per drift kind (dark, noise,
     classmix), 200 records each: the endpoint's own records for images drawn as `scones load` draws them,
     predicted by the serving handlers in-process, read back and checked by the monitor. Clean traffic drawn
     from the baseline's own images (as `scones load` does) is a lenient null; the second false-alarm rate
     sends synthetic test sets the baseline never saw (other seeds, same distribution), each image once: the
     null hypothesis the tests assume.
The model: --model DIR, else the synthetic bicycle/motorcycle set trained with train.py's defaults.

Scale (issue #23), no model needed: `--scale 100000,1000000` writes that many synthetic capture records (noisy
32×32 RGB PNGs, ~4 KB a line, 1,000 per file, in SageMaker's key layout) to a local folder and runs
`scones monitor` over each in a subprocess: wall time, peak memory summed over its process tree, the load
average while it ran. Targets on a quiet 2-core machine: 100,000 in <= 6 s, 1,000,000 in <= 60 s and <= 2 GB.
`--profile N` prints where one process's time goes (cProfile over `capture.read`, grouped: JSON, base64, PNG
decode, numpy, other). `--cpu N` prints the command's CPU seconds (user + system of its whole process tree, which
load disturbs less than wall time) at 2,000 and at N records, split into a fixed cost and a cost per record, with
a 2-core wall estimate from its phases. `--smoke` runs all three small (5,000 records) and writes nothing to
docs/benchmarks.md: a check that the bench works, not a figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _cloud import local_cloud, stage_synthetic, train_model
from _report import Report
from monitoring_fixtures import traffic_records, write_capture

from scones.core import aws, settings
from scones.monitoring import baseline, capture, monitor

REPORT = Report("monitor")
SCALE = Report("monitor-scale")  # its own section: a --scale run leaves the detection figures alone


def staged_and_model(tmp: Path, model: Path | None) -> tuple[Path, Path]:
    staged = stage_synthetic(tmp)
    if model is not None:
        return staged, model
    print("training a model on the synthetic set (train.py defaults) ...", flush=True)
    return staged, train_model(staged, tmp / "model")


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (MB), from /proc."""
    parents, rss = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
            rss[int(stat.parent.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    tree, todo = set(), [pid]
    while todo:
        current = todo.pop()
        tree.add(current)
        todo += [child for child, parent in parents.items() if parent == current and child not in tree]
    return sum(rss.get(p, 0) for p in tree) / 2**20


def run_measured(cmd: list[str], env: dict) -> tuple[subprocess.CompletedProcess, float]:
    """Run a command; also return the peak summed RSS of its process tree (sampled every 0.1 s)."""
    import threading

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0.0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss_mb(proc.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    sampler.join()
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr), peak[0]


def child_usage() -> resource.struct_rusage:
    return resource.getrusage(resource.RUSAGE_CHILDREN)


def big_monitor(tmp: Path, model: Path, images, base_dir: Path, n: int, env: dict) -> None:
    bucket = "bench-monitor"
    s3 = aws.client("s3", max_pool_connections=16)
    s3.create_bucket(Bucket=bucket)
    one_pass = traffic_records(model, images, 2000, None, seed=0)
    total_bytes, files = 0, 0
    started = time.perf_counter()
    folder = tmp / "big"
    for start in range(0, n, 2000):  # the same 2,000 answers again and again: parsing cost is per record
        chunk = one_pass[: min(2000, n - start)]
        for path in write_capture(folder, chunk, per_file=500, endpoint=f"ep/{start}"):
            body = path.read_bytes()
            total_bytes += len(body)
            s3.put_object(Bucket=bucket, Key=f"datacapture/{path.relative_to(folder)}", Body=body)
            path.unlink()
            files += 1
    print(
        f"uploaded {n} records in {files} files ({total_bytes / 1e6:.0f} MB) in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    before = child_usage()
    t0 = time.perf_counter()
    out, peak_tree = run_measured(
        [
            sys.executable,
            "-m",
            "scones.cli",
            "monitor",
            "--capture",
            f"s3://{bucket}/datacapture",
            "--baseline",
            str(base_dir),
            "--out",
            str(tmp / "big-report"),
            "--no-metrics",
        ],
        env,
    )
    wall = time.perf_counter() - t0
    after = child_usage()
    if out.returncode != 0:
        raise SystemExit(f"scones monitor failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    summary = json.loads((tmp / "big-report" / "summary.json").read_text())
    assert summary["records"] == n and summary["parsed"] == n, summary
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    REPORT.result(
        f"`scones monitor` over {n} capture records ({total_bytes / 1e6:.0f} MB of JSON lines in S3, {files} files)",
        f"{wall:.1f} s wall, {cpu:.1f} s CPU, "
        f"peak memory {peak_tree:.0f} MB summed over the process and its parser workers (largest single process "
        f"{after.ru_maxrss / 1024:.0f} MB); load average during the run "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; verdict {summary['verdict']}",
        "<= 30 s, <= 2 GB",
    )


def stream_cpu(tmp: Path, model: Path, images, env: dict, rate: float, seconds: float) -> None:
    from scones import endpoint

    bucket = env[settings.BUCKET]
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=bucket)
    for name, body in images:
        s3.put_object(Bucket=bucket, Key=f"data/test/{name}", Body=body)
    name = env[settings.SCONES_ENDPOINT_NAME]
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    runs = {}
    try:
        endpoint.start(str(model), name, port=0, log=lambda _m: None)
        for duration in (2.0, seconds):  # the short run measures start-up (Python, boto3, image fetch)
            before = child_usage()
            t0 = time.perf_counter()
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "scones.cli",
                    "load",
                    "--mode",
                    "stream",
                    "--rate",
                    str(rate),
                    "--duration",
                    str(duration),
                    "--via",
                    "endpoint",
                    "--json",
                    str(tmp / "stream.json"),
                ],
                env=env,
                capture_output=True,
                text=True,
            )
            wall = time.perf_counter() - t0
            after = child_usage()
            if out.returncode != 0:
                raise SystemExit(f"scones load failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            runs[duration] = (cpu, wall, json.loads((tmp / "stream.json").read_text()))
    finally:
        endpoint.stop(name, log=lambda _m: None)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    (cpu_s, _, _), (cpu, wall, summary) = runs[2.0], runs[seconds]
    marginal = (cpu - cpu_s) / (seconds - 2.0)
    REPORT.result(
        f"`scones load --mode stream --rate {rate:g} --duration {seconds:g} --via endpoint`, its own CPU",
        f"sent {summary['sent']} "
        f"({summary['succeeded']} succeeded, {summary['failed']} failed), {summary['throughput_per_s']:.1f}/s, "
        f"latency p50 {summary['latency_ms']['p50']} ms; its own CPU {cpu:.1f} s over {wall:.1f} s wall "
        f"(start-up {cpu_s:.1f} s CPU); while streaming: {100 * marginal:.0f}% of one core",
        "small",
    )


def fresh_images(tmp: Path, seed: int) -> list[tuple[str, bytes]]:
    """Test images the baseline never saw, from the same distribution: the synthetic set drawn with another seed."""
    from scones.data import staging

    classes = ["bicycle", "motorcycle"]
    source = staging.resolve_source("synthetic", classes, seed=seed, train_per_class=1, cache_dir=tmp / "cache")
    workdir = tmp / f"fresh-{seed}"
    staging.build(source, classes, workdir)
    return [(p.name, p.read_bytes()) for p in sorted((workdir / "test").rglob("*.png"))]


def once_each(model: Path, images: list[tuple[str, bytes]]) -> list[dict]:
    """Capture records for every image exactly once (no resampling), as the endpoint writes them."""
    from datetime import UTC, datetime, timedelta

    import numpy as np

    from services.endpoint import inference
    from services.endpoint.capture import record

    served = inference.model_fn(model)
    probs = inference.predict_fn(np.stack([inference.decode(b, "image/png", served.size) for _, b in images]), served)
    start = datetime(2026, 11, 27, tzinfo=UTC)
    return [
        record(body, "image/png", inference.output_fn(p[None]), start + timedelta(seconds=i))
        for i, ((_, body), p) in enumerate(zip(images, probs, strict=True))
    ]


def fresh_false_alarms(tmp: Path, model: Path, base, seeds: int) -> None:
    """New images from the same distribution, each sent once: the null hypothesis the tests assume."""
    alarms, failing, n = 0, {}, 0
    for seed in range(1, seeds + 1):
        folder = tmp / f"fresh-capture-{seed}"
        records = once_each(model, fresh_images(tmp, seed))
        n = len(records)
        write_capture(folder, records)
        result = monitor.analyse(capture.Location.parse(str(folder)), base, "bench", 0.93)
        alarms += result.verdict == "DRIFT"
        for c in result.failed:
            failing[c.name] = failing.get(c.name, 0) + 1
    REPORT.result(
        f"false alarms, {n} new images from the same distribution (synthetic test sets of seeds 1..{seeds}; "
        "the baseline is seed 0's), each sent once",
        f"{alarms}/{seeds} = {alarms / seeds:.0%}; checks that fired: {failing}",
        "<= 5 %",
    )


def rates(tmp: Path, model: Path, images, base, seeds: int, count: int = 200) -> None:
    for kind in (None, "dark", "noise", "classmix"):
        alarms, failing = 0, {}
        for seed in range(seeds):
            folder = tmp / f"rate-{kind}-{seed}"
            write_capture(folder, traffic_records(model, images, count, kind, seed=1000 + seed))
            result = monitor.analyse(capture.Location.parse(str(folder)), base, "bench", 0.93)
            alarms += result.verdict == "DRIFT"
            for c in result.failed:
                failing[c.name] = failing.get(c.name, 0) + 1
        what = "false-alarm rate (clean)" if kind is None else f"detection rate ({kind})"
        REPORT.result(
            f"{what}, traffic resampled from the baseline's images, {seeds} seeds × {count} records",
            f"{alarms}/{seeds} = {alarms / seeds:.0%}; checks that fired: {failing}",
            "<= 5 %" if kind is None else "high",
        )


def synthetic_capture(folder: Path, n: int, per_file: int = 1000, seed: int = 0) -> int:
    """`n` capture records of noisy 32×32 RGB PNGs with random two-class outputs; returns the bytes written."""
    import io
    from datetime import UTC, datetime, timedelta

    import numpy as np
    from PIL import Image

    from services.endpoint.capture import object_key, record

    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(500):
        pixels = np.clip(rng.normal(rng.uniform(60, 200), 25, (32, 32, 3)), 0, 255).astype(np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="PNG")
        pool.append(out.getvalue())
    start, total = datetime(2026, 11, 27, tzinfo=UTC), 0
    for first in range(0, n, per_file):
        lines = []
        for i in range(first, min(n, first + per_file)):
            p = float(rng.uniform(0.5, 1.0))
            output = json.dumps([p, 1 - p]).encode()
            rec = record(pool[i % len(pool)], "image/png", output, start + timedelta(seconds=i / 100))
            lines.append(json.dumps(rec, separators=(",", ":")))
        path = folder / object_key("", "ep", "AllTraffic", start + timedelta(seconds=first / 100))
        path.parent.mkdir(parents=True, exist_ok=True)
        body = "\n".join(lines) + "\n"
        path.write_text(body)
        total += len(body)
    return total


def synthetic_baseline(folder: Path) -> Path:
    """A baseline folder from 200 synthetic records (the same generator, another seed)."""
    table = capture.CaptureTable(labels=["bicycle", "motorcycle"])
    synthetic_capture(folder / "records", 200, seed=1)
    for path in sorted((folder / "records").rglob("*.jsonl")):
        capture.read_text(path.read_text(), path.name, table)
    frame = table.frame()
    labels = table.labels
    made = baseline.Baseline(
        frame,
        labels,
        baseline.statistics(frame, labels),
        baseline.constraints(labels, 0.93),
        {"model": "synthetic", "labels": labels, "images": len(frame), "threshold": 0.93},
    )
    return baseline.write(made, folder / "baseline")


def monitor_command(tmp: Path, folder: Path, base: Path, out: Path) -> tuple[list[str], dict]:
    """`scones monitor` over a local folder, as a user runs it, and its environment (no cloud)."""
    env = dict(os.environ, SCONES_STATE_DIR=str(tmp / "state"), SCONES_DATA_DIR=str(tmp / "data"))
    env.pop("AWS_ENDPOINT_URL", None)
    cmd = [sys.executable, "-m", "scones.cli", "monitor", "--capture", str(folder), "--baseline", str(base)]
    return [*cmd, "--out", str(out), "--no-metrics", "--threshold", "0.93"], env


def scale(tmp: Path, n: int, smoke: bool) -> None:
    folder = tmp / f"scale-{n}"
    size = synthetic_capture(folder, n)
    base = synthetic_baseline(tmp / f"scale-base-{n}")
    cmd, env = monitor_command(tmp, folder, base, tmp / f"scale-report-{n}")
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    out, peak = run_measured(cmd, env)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"scones monitor failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    summary = json.loads((tmp / f"scale-report-{n}" / "summary.json").read_text())
    assert summary["analysed"] == n, summary
    figures = (
        f"{wall:.1f} s wall ({n / wall:,.0f} records/s), peak memory {peak:.0f} MB summed over the process tree; "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores"
    )
    what = f"`scones monitor` over {n:,} synthetic capture records ({size / 1e6:.0f} MB, {n // 1000} files, local)"
    print(f"{what}: {figures}", flush=True)
    if not smoke:
        target = "<= 6 s" if n <= 100_000 else "<= 60 s, <= 2 GB"
        SCALE.result(what, figures, target)
    shutil.rmtree(folder)


PHASES = """
import resource, sys
from scones.monitoring import monitor
def cpu():
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime
marks = {}
for name in ("analyse", "write_outputs"):
    def timed(*a, _f=getattr(monitor, name), _n=name, **k):
        marks[_n] = [cpu()]
        result = _f(*a, **k)
        marks[_n].append(cpu())
        return result
    setattr(monitor, name, timed)
from scones.cli import main
code = main(sys.argv[1:])
(s0, c0), (s1, c1) = marks["analyse"]
(s2, _), (s3, c3) = marks["write_outputs"]
print("PHASES", s0, s1 - s0, c1 - c0, s3 - s2, c3 - c1, cpu()[0] - s3 + s2 - s1)
sys.exit(code)
"""


def cpu_split(tmp: Path, n: int, small: int = 2000) -> None:
    """CPU seconds of `scones monitor` (user + system of the process and every process it started) at `small` and
    at `n` records, by phase: the workers' share is the cost per record, the rest (start-up, this process while
    the workers read, the report, drawn from a sample of at most 10,000 rows) is nearly fixed. The phases give a
    wall estimate for 2 idle cores: what runs alone (start-up, the rest) plus half of the reading (workers and this
    process at once) plus the longer of the two halves of the report."""
    cpu, workers = {}, {}
    for count in (small, n):
        folder = tmp / f"cpu-{count}"
        synthetic_capture(folder, count)
        base = synthetic_baseline(tmp / f"cpu-base-{count}")
        cmd, env = monitor_command(tmp, folder, base, tmp / f"cpu-report-{count}")
        before = child_usage()
        out = subprocess.run([sys.executable, "-c", PHASES, *cmd[3:]], env=env, capture_output=True, text=True)
        after = child_usage()
        if out.returncode != 0:
            raise SystemExit(f"scones monitor failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
        cpu[count] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        start, main, workers[count], tail, child, rest = (float(x) for x in out.stdout.split("PHASES")[1].split())
        estimate = start + rest + (main + workers[count]) / 2 + max(tail, child)
        print(
            f"{count:>9,} records: {cpu[count]:.2f} s CPU — start-up {start:.2f}, reading: this process {main:.2f} and "
            f"its workers {workers[count]:.2f}, report: here {tail:.2f} and beside {child:.2f}, other {rest:.2f}; "
            f"2-core wall estimate {estimate:.2f} s",
            flush=True,
        )
        shutil.rmtree(folder)
    per = workers[n] / n
    print(
        f"{1e6 * per:.1f} µs CPU a record (the workers, at {n:,}), {cpu[n] - workers[n]:.2f} s CPU for the rest "
        f"({cpu[small] - workers[small]:.2f} s at {small:,}); load average {os.getloadavg()[0]:.1f}"
    )


def profile(tmp: Path, n: int) -> None:
    """Where one process's time goes reading `n` records: cProfile's internal time, grouped."""
    import cProfile
    import pstats

    folder = tmp / f"profile-{n}"
    synthetic_capture(folder, n)
    prof = cProfile.Profile()
    prof.enable()
    capture.read(capture.Location.parse(str(folder)), ["bicycle", "motorcycle"], workers=1)
    prof.disable()
    stats = pstats.Stats(prof).stats  # (file, line, name) -> (calls, primitive, internal, cumulative, callers)
    groups = {"JSON": 0.0, "base64": 0.0, "PNG decode": 0.0, "numpy": 0.0, "other": 0.0}
    for (path, _, name), (_, _, internal, _, _) in stats.items():
        canvas = path.endswith("capture.py") and name in ("put", "pixels")  # capture.Canvas: decode and read-out
        if "loads" in name or "json" in path:
            groups["JSON"] += internal
        elif "b64" in name or "a2b_base64" in name:
            groups["base64"] += internal
        elif (
            "PIL" in path or "Imaging" in name or "_plain_" in name or "crc32" in name or "inference" in path or canvas
        ):
            groups["PNG decode"] += internal
        elif "numpy" in path or name in ("grey_levels", "histogram", "add"):
            groups["numpy"] += internal
        else:
            groups["other"] += internal
    total = sum(groups.values())
    print(f"profile of capture.read over {n:,} records in one process: {total:.2f} s under cProfile")
    for group, seconds in groups.items():
        print(f"  {group:<11} {seconds:6.2f} s  {seconds / total:5.0%}  {1e6 * seconds / n:6.1f} µs/record")
    pstats.Stats(prof).sort_stats("tottime").print_stats(12)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="a model folder (default: train one)")
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--fresh-seeds", type=int, default=20, help="clean runs on test sets the baseline never saw")
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--skip-big", action="store_true")
    p.add_argument("--scale", default=None, help="comma-separated record counts, e.g. 100000,1000000 (no model)")
    p.add_argument("--profile", type=int, default=None, help="profile capture.read over this many records")
    p.add_argument("--cpu", type=int, default=None, help="CPU seconds at 2,000 and this many records (printed)")
    p.add_argument("--smoke", action="store_true", help="scale and profile at 5,000 records; write no figure")
    args = p.parse_args()
    if args.smoke or args.scale or args.profile or args.cpu:
        with tempfile.TemporaryDirectory(prefix="scones-bench-monitor-") as name:
            if args.profile or args.smoke:
                profile(Path(name), args.profile or 5000)
            if args.cpu or args.smoke:
                cpu_split(Path(name), args.cpu or 5000)
            for n in [5000] if args.smoke else [int(x) for x in (args.scale or "").split(",") if x]:
                scale(Path(name), n, args.smoke)
        if not args.smoke and args.scale:
            SCALE.write(notes="Scale: synthetic records in a local folder (no S3), `scones monitor` in a subprocess.")
        return
    with tempfile.TemporaryDirectory(prefix="scones-bench-monitor-") as name:
        tmp = Path(name)
        staged, model = staged_and_model(tmp, args.model)
        images = [(p.name, p.read_bytes()) for p in sorted((staged / "test").rglob("*.png"))]
        base = baseline.build(model, images, 0.93, str(model))
        base_dir = baseline.write(base, tmp / "baseline")
        print(f"baseline: {len(images)} staged test images; low-confidence rate {base.meta['low_confidence_rate']:.1%}")
        rates(tmp, model, images, base, args.seeds)
        fresh_false_alarms(tmp, model, base, args.fresh_seeds)
        with local_cloud() as url:
            env = dict(
                os.environ,
                AWS_ENDPOINT_URL=url,
                SCONES_STATE_DIR=str(tmp / "state"),
                SCONES_DATA_DIR=str(tmp / "data"),
                SCONES_BUCKET="bench-stream",
                SCONES_ENDPOINT_NAME="bench-monitor-ep",
                SCONES_ENDPOINT_PORT="0",
            )
            stream_cpu(tmp, model, images, env, args.rate, args.seconds)
            if not args.skip_big:
                big_monitor(tmp, model, images, base_dir, args.records, env)
    REPORT.write(notes=f"The model: {args.model or 'trained on the synthetic set with train.py defaults'}.")


if __name__ == "__main__":
    main()
