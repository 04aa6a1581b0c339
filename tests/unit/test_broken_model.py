"""The broken candidate of the demo and the rollout bench: it passes the checks made before it gets traffic
(loading, the warm-up, a switch's probe image) and fails on real images, through the serving handlers."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from helpers import make_brightness_model, solid_png
from PIL import Image

from scones import broken_model, endpoint
from services.endpoint import inference


def photo_like(seed: int = 0) -> bytes:
    """A PNG with texture, as every staged image has."""
    pixels = np.random.default_rng(seed).integers(40, 200, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def answer(model: inference.Model, body: bytes) -> np.ndarray:
    return inference.predict_fn(inference.input_fn(body, "image/png"), model)


def test_it_answers_the_probe_and_fails_on_any_textured_image(tmp_path):
    # given a broken copy of a model with other labels and another normalisation
    like = make_brightness_model(tmp_path / "production")
    config = json.loads((like / "config.json").read_text())
    config["preprocessing"].update(mean=[0.5, 0.4, 0.3], std=[0.25, 0.25, 0.25])
    (like / "config.json").write_text(json.dumps(config))
    (like / "labels.json").write_text(json.dumps(["bus", "train", "tram"]))
    broken = broken_model.make(tmp_path / "broken", like=like)
    # when it loads (which runs the warm-up), it answers the probe a switch sends: one share per label
    model = inference.load(broken, threads=1)
    assert model.labels == ["bus", "train", "tram"]
    assert answer(model, endpoint.probe_image(model.size)).tolist() == [[pytest.approx(1 / 3)] * 3]
    assert answer(model, solid_png(230)).shape == (1, 3)  # any flat colour
    # then any image with texture fails in onnxruntime, as real traffic does
    for seed in range(3):
        with pytest.raises(Exception, match=r"(?i)gather|index|out of"):
            answer(model, photo_like(seed))


def test_the_bright_kind_fails_on_bright_images_only(tmp_path):
    model = inference.load(broken_model.make(tmp_path / "broken", fails_on="bright"), threads=1)
    assert answer(model, solid_png(25)).shape == (1, 2) and answer(model, photo_like()).shape == (1, 2)
    with pytest.raises(Exception, match=r"(?i)gather|index|out of"):
        answer(model, solid_png(230))
    with pytest.raises(ValueError, match="fails_on must be one of texture, bright"):
        broken_model.make(tmp_path / "other", fails_on="dark")
