"""The README's picture of `scones monitor --compare`: `python bench/compare_picture.py [--out F.png]`.

Not a benchmark (no figure is measured; `make bench` does not run it): a real local run whose report is drawn.
On a fresh local cloud, one endpoint (one worker) serves production, a sure model, with an unsure candidate as a
100 % Shadow (the brightness models of tests/helpers.py: the same classes, the candidate's logits 5× blunter).
300 noise images of spread brightness are sent through boto3's invoke_endpoint; the endpoint is stopped (its
capture flushed to S3), `scones monitor --compare production,shadow` (scones/monitoring/compare.py) reads both
variants' capture and writes its report.html, which headless Chromium renders (scones/monitoring/report.py
screenshot). The page is cropped to what is drawn and written as a palette PNG under 100 KB (default
docs/compare-report.png, which the README shows).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import numpy as np
from _cloud import ROOT, local_cloud
from helpers import make_brightness_model
from PIL import Image

from scones import endpoint, load
from scones.core import aws, settings
from scones.core import target as targets
from scones.monitoring import compare, report
from services.endpoint.variants import PRODUCTION, SHADOW, Variant


def images(n: int) -> list[bytes]:
    """Noise PNGs whose mean brightness spreads from dark to bright: each model answers each with its own
    confidence."""
    rng, out = np.random.default_rng(0), []
    for i in range(n):
        level = 40 + 175 * i / (n - 1)
        pixels = np.clip(rng.normal(level, 25, (32, 32, 3)), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG")
        out.append(buffer.getvalue())
    rng.shuffle(out)
    return out


def quiet(_message: str) -> None:
    pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "compare-report.png")
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    if report.chromium() is None:
        raise SystemExit("no chromium binary: apt-get install chromium")
    tmp = Path(tempfile.mkdtemp(prefix="scones-compare-picture-"))
    name, bucket = "scones-endpoint", "scones-unlimited"  # a fresh cloud: the names a first `make demo` uses
    os.environ.update(
        {
            settings.DATA_DIR: str(tmp / "data"),
            settings.STATE_DIR: str(tmp / "state"),
            settings.ENDPOINT_PORT: "0",
            settings.SCONES_ENDPOINT_NAME: name,
            settings.CAPTURE_BUCKET: bucket,
            settings.ENDPOINT_METRICS_S: "0",
        }
    )
    try:
        sure = make_brightness_model(tmp / "production", sharpness=30.0)
        unsure = make_brightness_model(tmp / "candidate", sharpness=6.0)
        with local_cloud():
            aws.ensure_bucket(bucket, quiet)
            endpoint.start(str(sure), name, port=0, log=quiet, workers=1)
            try:
                production = endpoint.variants(name)[0]
                shadow = Variant(SHADOW, unsure, 0.0, 100.0, "s3://models/candidate/output/model.tar.gz")
                endpoint.serve_variants(
                    name, [Variant(PRODUCTION, production.model_dir, 1.0, 0.0, production.model_uri), shadow], log=quiet
                )
                targets.activate("local")
                send = load.endpoint_sender(name, 1)
                bodies = images(args.requests)
                failed = [i for i, body in enumerate(bodies) if not send(f"image-{i}", body).ok]
                if failed:
                    raise SystemExit(f"{len(failed)} request(s) failed")
                time.sleep(1.0)  # the last mirrored requests are answered and buffered
            finally:
                endpoint.stop(name, log=quiet)  # flushes both variants' capture to S3
            result = compare.run(
                "production,shadow",
                f"s3://{bucket}/{settings.capture_prefix()}/{name}",
                tmp / "out",
                threshold=settings.DEFAULT_THRESHOLD,
            )
        shot = report.screenshot(result.files["report"], tmp / "page.png", width=1000, height=1500)
        page = Image.open(shot).convert("RGB")
        rows = np.asarray(page).min(axis=(1, 2)) < 250  # the rows with something drawn
        bottom = int(np.nonzero(rows)[0].max()) + 24 if rows.any() else page.height
        picture = page.crop((0, 0, page.width, min(bottom, page.height)))
        picture = picture.resize((picture.width * 4 // 5, picture.height * 4 // 5), Image.LANCZOS)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        picture.quantize(64).save(args.out, optimize=True)
        print(f"{args.out}: {args.out.stat().st_size // 1024} KB, verdict {result.verdict}")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
