"""Backfill benchmark: `python bench/bench_backfill.py [--images 10000] [--batch-size 25] [--model DIR | --epochs 18]
[--no-write]`.

On a fresh local cloud: stage --images synthetic PNGs under one prefix, train the default model unless --model
names one, `scones deploy --target local`, then classify the same images three ways and the endpoint two ways:
  - the backfill: `scones invoke --prefix s3://…` (Distributed Map, --batch-size keys per Express child, one
    endpoint call per child): images/s from start to the summary, every key accounted for
  - the inline Map path (statemachine/classify_batch.asl.json) over the same keys, 1,000 keys per execution
    (its input carries the keys: 10,000 of them would pass the 256 KiB payload cap), executions one after another
  - the endpoint alone: one image per request (8 clients) against --batch-size images per request (a JSON batch
    body, 8 clients), images/s
Target (DESIGN.md): backfill >= 300 images/s on 2 cores. Not run on a quiet machine yet: no figure in the docs.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _scratch
import numpy as np
from _cloud import local_cloud
from _report import Report
from bench_workflow import train_model
from PIL import Image

from scones import backfill, cli, endpoint, stacks, workflow
from scones.core import aws, settings

PREFIX = "bench-backfill/"


def pngs(n: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(min(n, 256)):  # 256 distinct images, repeated: decode cost is per image, not per distinct one
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return [out[i % len(out)] for i in range(n)]


def stage(bucket: str, n: int) -> list[str]:
    s3 = aws.client("s3", max_pool_connections=32)
    keys = [f"{PREFIX}img-{i:06d}.png" for i in range(n)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda kv: s3.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), zip(keys, pngs(n), strict=True)))
    return keys


def endpoint_rate(name: str, images: list[bytes], per_request: int, clients: int = 8) -> float:
    runtime = aws.client("sagemaker-runtime", max_pool_connections=clients)
    if per_request == 1:
        bodies = [(b, "image/png") for b in images]
    else:
        bodies = [
            (
                json.dumps([base64.b64encode(b).decode() for b in images[i : i + per_request]]).encode(),
                "application/json",
            )
            for i in range(0, len(images), per_request)
        ]
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda bc: runtime.invoke_endpoint(EndpointName=name, ContentType=bc[1], Body=bc[0]), bodies))
    return len(images) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=settings.DEFAULT_BACKFILL_BATCH_SIZE)
    parser.add_argument("--model", help="a model folder (default: train one on the synthetic set)")
    parser.add_argument("--epochs", type=int, default=18)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    tmp = _scratch.folder("scones-bench-bf-")
    name = "bench-endpoint"
    os.environ.update(
        {settings.DATA_DIR: str(tmp / "data"), settings.ENDPOINT_PORT: "0", settings.SCONES_ENDPOINT_NAME: name}
    )
    model = Path(args.model) if args.model else train_model(tmp, args.epochs)
    report = Report("backfill")
    with local_cloud():
        bucket = settings.bucket()
        try:
            aws.ensure_bucket(bucket, lambda _m: None)
            keys = stage(bucket, args.images)
            assert cli.main(["deploy", "--target", "local", "--model", str(model)]) == 0
            ran = f"ran: {args.images} images, batch size {args.batch_size}, model {model}, {os.cpu_count()} CPUs"
            print(ran)
            done = backfill.run(f"s3://{bucket}/{PREFIX}", args.batch_size, log=lambda _m: None)
            accounted = len({r.key for r in done.rows})
            report.result(
                f"backfill of {args.images} images ({args.batch_size} per child)",
                f"{args.images / done.seconds:.0f} images/s ({done.seconds:.1f} s, {accounted} keys accounted for)",
                ">= 300 images/s",
            )
            sfn, machine = aws.client("stepfunctions", max_pool_connections=32), stacks.outputs()[stacks.BATCH]
            started = time.perf_counter()
            rows = []
            for i in range(0, len(keys), 1000):
                rows += workflow.run_batch(sfn, machine, bucket, keys[i : i + 1000])[1]
            seconds = time.perf_counter() - started
            report.result(
                f"inline Map over the same {args.images} images (1,000 per execution)",
                f"{args.images / seconds:.0f} images/s ({seconds:.1f} s, {len(rows)} rows)",
            )
            sample = pngs(min(args.images, 2000))
            one, many = endpoint_rate(name, sample, 1), endpoint_rate(name, sample, args.batch_size)
            report.result("endpoint, one image per request (8 clients)", f"{one:.0f} images/s")
            report.result(f"endpoint, {args.batch_size} images per request (8 clients)", f"{many:.0f} images/s")
            if not args.no_write:
                report.write(notes=ran)
            return 0
        finally:
            endpoint.stop(name, log=lambda _m: None)


if __name__ == "__main__":
    raise SystemExit(main())
