"""Test data for monitoring: a labelled image set the brightness model (helpers.make_brightness_model) gets
right — bicycles are bright, motorcycles dark, both with texture — and capture files made of the endpoint's
own records for traffic drawn from it, with or without drift (scones/load.py's transforms)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

from scones import load
from services.endpoint import inference
from services.endpoint.capture import object_key, record


def png(pixels: np.ndarray, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels, mode if mode != "RGB" else None).save(out, format="PNG")
    return out.getvalue()


def held_out_images(n_per_class: int = 60, seed: int = 7) -> list[tuple[str, bytes]]:
    """(CIFAR-style name, PNG) pairs: bright textured 'bicycle' images, dark textured 'motorcycle' ones."""
    rng = np.random.default_rng(seed)
    images = []
    for cls, centre in (("bicycle", 175), ("motorcycle", 80)):
        for i in range(n_per_class):
            level = centre + rng.normal(0, 12)
            pixels = np.clip(rng.normal(level, 25, (32, 32, 3)), 0, 255).astype(np.uint8)
            images.append((f"{cls}_s_{i:06d}.png", png(pixels)))
    return images


def traffic_records(
    model_dir: Path, images: list[tuple[str, bytes]], count: int, drift: str | None, seed: int
) -> list[dict]:
    """Capture records as the endpoint writes them, for `count` requests drawn as `scones load` draws them."""
    rng = np.random.default_rng(seed)
    bodies = dict(images)
    chosen = load.choose(list(bodies), count, drift, rng)
    drifted = {k: load.transform(bodies[k], drift, rng) for k in sorted(set(chosen))}
    model = inference.model_fn(model_dir)
    pixels = np.stack([inference.decode(drifted[k], "image/png", model.size) for k in chosen])
    probs = inference.predict_fn(pixels, model)
    start = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)
    return [
        record(drifted[k], "image/png", inference.output_fn(p[None]), start + timedelta(seconds=i))
        for i, (k, p) in enumerate(zip(chosen, probs, strict=True))
    ]


def write_capture(folder: Path, records: list[dict], per_file: int = 37, endpoint: str = "ep") -> list[Path]:
    """JSON-lines files in SageMaker's layout, `per_file` records each."""
    paths = []
    for start in range(0, len(records), per_file):
        chunk = records[start : start + per_file]
        when = datetime.fromisoformat(chunk[0]["eventMetadata"]["inferenceTime"].replace("Z", "+00:00"))
        path = folder / object_key("", endpoint, "AllTraffic", when)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in chunk))
        paths.append(path)
    return paths
