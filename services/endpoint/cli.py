"""The endpoint's command line: settings and flags into the app (app.py), served by supervisor.py.

    python -m services.endpoint --model MODEL_DIR [--name scones-endpoint] [--host 127.0.0.1] [--port 8080]
                                [--workers N] [--record PATH] [--source S3_URI] [--no-capture]
    python -m services.endpoint --variants CONTROL.json …     (several production or shadow variants: variants.py)

`--workers N` runs N servers as processes sharing the port, each with cores / N onnxruntime threads; /ping
answers 200 once every worker has loaded the model and /_scones/stats sums every worker's counters.
SIGTERM: each worker finishes its in-flight requests, then flushes its capture buffer. Exit status 2: the
model folder, a setting or the port is refused (one `error:` line says which).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from scones.core import aws, settings

from . import inference, quality
from .app import EndpointApp
from .board import Board
from .capture import CaptureWriter
from .supervisor import WORKER_DEATHS, serve, worker_death_data
from .variants import PRODUCTION, Variant, check, read


def s3_put(bucket: str):
    """The capture writer's uploader: through the project's client factory (AWS_ENDPOINT_URL picks the cloud)."""
    s3 = aws.client("s3")

    def put(key: str, body: bytes) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/jsonl")

    return put


def cloudwatch_put(**config):
    """The metrics' uploader (AWS_ENDPOINT_URL picks the cloud): SageMaker's namespace unless told another.
    `config`: the client's (aws.client: max_attempts, timeouts)."""
    cloudwatch = aws.client("cloudwatch", **config)

    def put(data: list[dict], namespace: str = "AWS/SageMaker") -> None:
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=data)

    return put


def worker_deaths(name: str, variants: list[str]) -> Callable[[int, int, int], None]:
    """The supervisor's `on_death`: WorkerDeaths put for every variant served (a rollout's alarm rolls back on it).
    One quick try, since the dead worker's restart waits for it: a cloud that does not answer costs a line, never
    the supervisor. The client is made in the supervisor at the first death, after the workers forked, and is
    not the one a worker makes (other settings, so another cache entry in aws.client): none is shared."""

    def put(slot: int, pid: int, code: int) -> None:
        try:
            send = cloudwatch_put(max_attempts=1, connect_timeout=2, read_timeout=2)
            send(worker_death_data(name, variants, time.time()), quality.NAMESPACE)
        except Exception as exc:  # the supervisor must go on restarting workers
            print(f"worker {slot} (pid {pid}, status {code}): {WORKER_DEATHS} not put: {exc}", flush=True)

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
    p.add_argument("--model", type=Path, default=None, help="an unpacked model folder (model.onnx, labels.json, …)")
    p.add_argument(
        "--variants",
        type=Path,
        default=None,
        help="a control file naming each variant's model and weight (variants.py)",
    )
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
        if (args.model is None) == (args.variants is None):
            raise ValueError("pass --model MODEL_DIR or --variants CONTROL.json (one of them)")
        if args.variants is not None:
            variants = read(args.variants).variants
        else:
            variants = [Variant(PRODUCTION, args.model, model_uri=args.source or str(args.model))]
        check(variants)
        for v in variants:
            inference.check_model_dir(v.model_dir)
        workers = args.workers if args.workers is not None else settings.endpoint_workers()
        if not 0 <= workers <= 64:
            raise ValueError(f"--workers must be in 0..64 (0: one per core), got {workers}")
        workers = workers or cores()
        threads = settings.ort_threads() or max(1, cores() // workers)
        bucket, prefix, percent = settings.capture_bucket(), settings.capture_prefix(), settings.capture_percent()
        unsent = settings.state_dir() / "capture-unsent"
        max_batch, max_wait, max_body = settings.max_batch_size(), settings.max_wait_ms(), settings.max_payload_bytes()

        metrics_s = settings.endpoint_metrics_s()
        window, threshold = settings.rollout_window(), settings.threshold()

        def build(board: Board) -> EndpointApp:  # in the worker: its boto3 clients are its own
            put = s3_put(bucket) if not args.no_capture else None

            def capture_for(variant: str) -> CaptureWriter | None:
                if put is None:
                    return None
                return CaptureWriter(
                    put, args.name, prefix=prefix, variant=variant, percent=percent, fallback_dir=unsent
                )

            return EndpointApp(
                variants[0].model_dir,
                args.name,
                None,
                max_batch,
                max_wait,
                max_body,
                board,
                threads,
                variants=variants,
                capture_for=capture_for,
                control=args.variants,
                put_metrics=cloudwatch_put() if metrics_s > 0 and not args.no_capture else None,
                metrics_period_s=metrics_s,
                window=window,
                threshold=threshold,
            )

        first = variants[0]
        about = {
            "name": args.name,
            "model_dir": str(first.model_dir),
            "model_uri": first.model_uri or str(first.model_dir),
        }
        if args.variants is not None:
            about["variants_file"] = str(args.variants)
            about["variants"] = [v.name for v in variants]
        deaths = worker_deaths(args.name, [v.name for v in variants]) if metrics_s > 0 and not args.no_capture else None
        code = serve(
            build, args.host, args.port, workers, args.record, about, args.join, len(variants), on_death=deaths
        )
    except (inference.ModelLoadError, settings.SettingsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    sys.exit(code)
