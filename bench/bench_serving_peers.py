"""Peer benchmark: this project's endpoint (capture on) against TorchServe, on the same model, machine and load.

    python bench/bench_serving_peers.py [--model DIR] [--image PNG] [--seconds 10] [--rounds 3]
    python bench/bench_serving_peers.py --setup-torchserve     # once: a throwaway venv for TorchServe

TorchServe is what SageMaker's PyTorch inference container runs. It serves the same trained artifact through
bench/torchserve_handler.py, which calls this project's own services/endpoint/inference.py (same decode,
preprocessing and onnxruntime session), with as many Python workers as our endpoint has processes, each with
cores / workers onnxruntime threads, and TorchServe's batching (batch 8, 2 ms). Both servers are driven by the
same wrk script (2 threads, 8 connections, the same 32×32 PNG), alternating within each round; printed: img/s,
p50/p99 and the resident memory of each server's whole process tree, and ours / TorchServe per round.

TorchServe needs Java 17 (`java` on PATH) and the `torchserve` + `torch-model-archiver` packages. They live in
a venv of their own (--torchserve-venv, default /tmp/scones-torchserve-venv) so that the project's pins stay
untouched; its workers import torch, which that venv borrows from this one through a .pth file (torch is never
installed twice). Missing Java or packages: TorchServe is skipped with the reason, our figures still print.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _scratch
from _cloud import local_cloud
from _report import Report
from _serving import WrkResult, tree_rss_mb, wrk, wrk_available, wrk_script
from bench_endpoint import quick_model, random_png

from scones import endpoint
from scones.core import aws, settings

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VENV = Path("/tmp/scones-torchserve-venv")
TS_PACKAGES = ["torchserve", "torch-model-archiver", "onnxruntime", "numpy", "pillow"]


def setup_torchserve(venv: Path) -> None:
    """A venv with TorchServe; torch comes from this venv through a .pth file (never installed again)."""
    import torch

    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *TS_PACKAGES], check=True)
    site = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import site; print(site.getsitepackages()[0])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "zz-scones-torch.pth").write_text(str(Path(torch.__file__).resolve().parent.parent) + "\n")
    print(f"TorchServe installed in {venv}")


def torchserve_missing(venv: Path) -> str | None:
    """Why TorchServe cannot run here, or None."""
    if shutil.which("java") is None:
        return "Java is not installed (TorchServe's frontend needs Java 17: apt-get install openjdk-17-jre-headless)"
    if not (venv / "bin" / "torchserve").exists():
        return f"no TorchServe in {venv} (run this bench with --setup-torchserve, or pass --torchserve-venv)"
    check = subprocess.run([str(venv / "bin" / "python"), "-c", "import ts, torch, onnxruntime"], capture_output=True)
    if check.returncode != 0:
        return f"{venv}'s python cannot import ts, torch and onnxruntime: {check.stderr.decode()[-300:]}"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post_ok(url: str, body: bytes) -> bool:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "image/png"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200 and len(json.loads(response.read())) > 0
    except (OSError, ValueError):
        return False


def start_torchserve(venv: Path, model_dir: Path, tmp: Path, workers: int, threads: int, body: bytes):
    """TorchServe serving the model through our handler; returns (process, prediction URL)."""
    pack = tmp / "ts-pack"
    store = tmp / "ts-store"
    pack.mkdir()
    store.mkdir()
    for name in ("model.onnx", "labels.json", "config.json"):
        shutil.copy(model_dir / name, pack / name)
    shutil.copy(ROOT / "services" / "endpoint" / "inference.py", pack / "inference.py")
    extra = ",".join(str(pack / n) for n in ("model.onnx", "labels.json", "config.json", "inference.py"))
    subprocess.run(
        [str(venv / "bin" / "torch-model-archiver"), "--model-name", "scones", "--version", "1.0", "--handler",
         str(ROOT / "bench" / "torchserve_handler.py"), "--extra-files", extra, "--export-path", str(store)],
        check=True,
    )  # fmt: skip
    port, management, metrics = free_port(), free_port(), free_port()
    models = {
        "scones": {
            "1.0": {
                "defaultVersion": True,
                "marName": "scones.mar",
                "minWorkers": workers,
                "maxWorkers": workers,
                "batchSize": 8,
                "maxBatchDelay": 2,
                "responseTimeout": 120,
            }
        }
    }
    config = tmp / "config.properties"
    config.write_text(
        f"inference_address=http://127.0.0.1:{port}\nmanagement_address=http://127.0.0.1:{management}\n"
        f"metrics_address=http://127.0.0.1:{metrics}\ndisable_token_authorization=true\nenable_metrics_api=false\n"
        f"install_py_dep_per_model=false\nmodel_store={store}\nload_models=scones.mar\nmodels={json.dumps(models)}\n"
    )
    env = dict(
        os.environ,
        PATH=f"{venv / 'bin'}:{os.environ['PATH']}",
        LOG_LOCATION=str(tmp / "ts-logs"),
        METRICS_LOCATION=str(tmp / "ts-logs"),
        SCONES_ORT_THREADS=str(threads),
    )
    with open(tmp / "torchserve.log", "wb") as log:
        proc = subprocess.Popen(
            [str(venv / "bin" / "torchserve"), "--start", "--foreground", "--ncs", "--model-store", str(store),
             "--ts-config", str(config), "--disable-token-auth"],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/predictions/scones"
    deadline = time.monotonic() + 120
    while not post_ok(url, body):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_group(proc.pid)
            raise SystemExit(f"TorchServe did not serve (log: {tmp / 'torchserve.log'})")
        time.sleep(0.5)
    return proc, url


def stop_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
        for _ in range(100):
            os.killpg(pid, 0)
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--image", type=Path, default=None, help="the PNG to send (default: a test image)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="our processes = TorchServe's Python workers")
    parser.add_argument("--torchserve-venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--setup-torchserve", action="store_true", help="create --torchserve-venv and exit")
    args = parser.parse_args()
    if args.setup_torchserve:
        setup_torchserve(args.torchserve_venv)
        return 0
    if not wrk_available():
        print("bench_serving_peers skipped: wrk is not installed (`apt-get install wrk`: it drives both servers)")
        return 0
    tmp = _scratch.folder("scones-bench-peers-")
    model_dir, body = quick_model(tmp) if args.model is None else (args.model, random_png())
    body = args.image.read_bytes() if args.image else body
    script = wrk_script(body, tmp)
    cores = len(os.sched_getaffinity(0))
    workers = args.workers or settings.endpoint_workers() or cores
    threads = max(1, cores // workers)
    skipped = torchserve_missing(args.torchserve_venv)
    results: dict[str, list[WrkResult]] = {"ours": [], "torchserve": []}
    rss: dict[str, float] = {"ours": 0.0, "torchserve": 0.0}
    with local_cloud() as _url:
        bucket = f"bench-peers-{int(time.time())}"
        aws.client("s3").create_bucket(Bucket=bucket)
        os.environ[settings.CAPTURE_BUCKET] = bucket
        os.environ[settings.CAPTURE_PERCENT] = "100"
        ours = endpoint.start(str(model_dir), "bench-peers", port=0, log=lambda _m: None, workers=workers)
        servers = {"ours": (ours.pid, ours.url + "/invocations")}
        ts_proc = None
        try:
            if skipped is None:
                ts_proc, ts_url = start_torchserve(args.torchserve_venv, model_dir, tmp, workers, threads, body)
                servers["torchserve"] = (ts_proc.pid, ts_url)
            for _pid, url in servers.values():
                wrk(url, script, 8, 3)  # warm up
            for _ in range(args.rounds):
                for who, (pid, url) in servers.items():
                    result = wrk(url, script, 8, args.seconds, server_pid=pid)
                    if result.non_2xx or result.socket_errors:
                        raise SystemExit(
                            f"{who}: {result.non_2xx} error responses, {result.socket_errors} socket errors"
                        )
                    results[who].append(result)
                    rss[who] = max(rss[who], tree_rss_mb(pid))
        finally:
            endpoint.stop("bench-peers", log=lambda _m: None)
            if ts_proc is not None:
                stop_group(ts_proc.pid)

    report = Report("serving-peers")
    print(f"model: {model_dir}; body: a {len(body)}-byte PNG; {cores} cores shared by wrk and the server")
    print(f"wrk -t2 -c8 -d{args.seconds:.0f}s, {args.rounds} rounds; {workers} workers × {threads} ORT threads")
    for who, label in (("ours", "scones endpoint, capture on"), ("torchserve", "TorchServe (batch 8, 2 ms)")):
        runs = results[who]
        if not runs:
            report.result(label, f"skipped: {skipped}")
            continue
        rates = ", ".join(f"{r.rps:.0f}" for r in runs)
        p50, p99 = statistics.median(r.p50_ms for r in runs), statistics.median(r.p99_ms for r in runs)
        report.result(
            f"{label}, wrk -t2 -c8, {workers} workers × {threads} ORT threads",
            f"{rates} img/s (median {statistics.median(r.rps for r in runs):.0f}), "
            f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, RSS {rss[who]:.0f} MB, "
            f"CPU {statistics.median(r.cpu_ms_per_request() for r in runs):.3f} ms per image",
        )
    if results["torchserve"]:
        ratios = [a.rps / b.rps for a, b in zip(results["ours"], results["torchserve"], strict=True)]
        report.result(
            "ours ÷ TorchServe img/s",
            f"{', '.join(f'{x:.2f}' for x in ratios)} → median {statistics.median(ratios):.2f}",
            ">= 2.0",
        )
        cpu_ours = statistics.median(r.cpu_ms_per_request() for r in results["ours"])
        cpu_ts = statistics.median(r.cpu_ms_per_request() for r in results["torchserve"])
        report.result("TorchServe CPU per image ÷ ours (img/s on a machine of its own)", f"{cpu_ts / cpu_ours:.2f}")
    report.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
