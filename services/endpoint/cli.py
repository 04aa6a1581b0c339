"""The endpoint's command line: settings and flags into the app (app.py), served by supervisor.py.

    python -m services.endpoint --model MODEL_DIR [--name scones-endpoint] [--host 127.0.0.1] [--port 8080]
                                [--workers N] [--record PATH] [--source S3_URI] [--no-capture]

`--workers N` runs N servers as processes sharing the port, each with cores / N onnxruntime threads; /ping
answers 200 once every worker has loaded the model and /_scones/stats sums every worker's counters.
SIGTERM: each worker finishes its in-flight requests, then flushes its capture buffer. Exit status 2: the
model folder, a setting or the port is refused (one `error:` line says which).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from scones.core import aws, settings

from . import inference
from .app import EndpointApp
from .board import Board
from .capture import CaptureWriter
from .supervisor import serve


def s3_put(bucket: str):
    """The capture writer's uploader: through the project's client factory (AWS_ENDPOINT_URL picks the cloud)."""
    s3 = aws.client("s3")

    def put(key: str, body: bytes) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/jsonl")

    return put


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m services.endpoint", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", type=Path, required=True, help="an unpacked model folder (model.onnx, labels.json, …)")
    p.add_argument("--name", default=settings.endpoint_name())
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=settings.endpoint_port())
    p.add_argument(
        "--workers", type=int, default=None, help="server processes (default $SCONES_ENDPOINT_WORKERS or one per core)"
    )
    p.add_argument("--record", type=Path, default=None, help="write pid and url here once listening")
    p.add_argument("--source", default=None, help="where the model came from (an s3:// URI), for the record")
    p.add_argument("--no-capture", action="store_true")
    p.add_argument(
        "--join",
        action="store_true",
        help="join the server listening on --port (a deploy's switch): listen only once the model is loaded",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        inference.check_model_dir(args.model)
        workers = args.workers if args.workers is not None else settings.endpoint_workers()
        if not 0 <= workers <= 64:
            raise ValueError(f"--workers must be in 0..64 (0: one per core), got {workers}")
        workers = workers or cores()
        threads = settings.ort_threads() or max(1, cores() // workers)
        bucket, prefix, percent = settings.capture_bucket(), settings.capture_prefix(), settings.capture_percent()
        unsent = settings.state_dir() / "capture-unsent"
        max_batch, max_wait, max_body = settings.max_batch_size(), settings.max_wait_ms(), settings.max_payload_bytes()

        def build(board: Board) -> EndpointApp:  # in the worker: its boto3 client is its own
            capture = None
            if not args.no_capture:
                capture = CaptureWriter(s3_put(bucket), args.name, prefix=prefix, percent=percent, fallback_dir=unsent)
            return EndpointApp(args.model, args.name, capture, max_batch, max_wait, max_body, board, threads)

        about = {"name": args.name, "model_dir": str(args.model), "model_uri": args.source or str(args.model)}
        code = serve(build, args.host, args.port, workers, args.record, about, join=args.join)
    except (inference.ModelLoadError, settings.SettingsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    sys.exit(code)
