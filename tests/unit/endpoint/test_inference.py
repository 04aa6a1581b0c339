"""The four SageMaker handlers, called with plain bytes as the container and our server call them."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from helpers import png_bomb
from PIL import Image

from services.endpoint import inference


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def model(tiny_model):
    return inference.model_fn(tiny_model)


RGB = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8), "RGB")


@pytest.mark.parametrize(
    ("image", "fmt", "content_type"),
    [
        (RGB, "PNG", "image/png"),
        (RGB.convert("RGBA"), "PNG", "image/png"),
        (RGB.convert("L"), "PNG", "image/png"),
        (RGB.convert("P"), "PNG", "application/x-image"),
        (RGB, "JPEG", "image/jpeg"),
        (RGB.resize((64, 48)), "PNG", "image/png"),
        (RGB.resize((500, 400)), "JPEG", "image/jpeg; charset=binary"),
    ],
)
def test_any_mode_and_size_classifies(model, image, fmt, content_type):
    batch = inference.input_fn(encode(image, fmt), content_type)
    assert batch.shape == (1, 32, 32, 3) and batch.dtype == np.uint8
    probs = json.loads(inference.output_fn(inference.predict_fn(batch, model), "application/json"))
    assert len(probs) == 2 and abs(sum(probs) - 1) < 1e-4


def test_transparent_pixels_become_white():
    clear = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    assert (inference.decode(encode(clear), "image/png") == 255).all()


def test_serving_preprocesses_exactly_as_training_did(model, tiny_staged):
    import torch

    from training.evaluate import load_images
    from training.train import to_tensor

    images, _ = load_images(tiny_staged / "test", tiny_staged / "test.lst")
    body = (tiny_staged / "test" / "bicycle_s_000030.png").read_bytes()
    ours = inference.preprocess(inference.input_fn(body, "image/png"), model)
    theirs = to_tensor(images[:1], model.mean, model.std)
    assert isinstance(theirs, torch.Tensor)
    np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-6)


@pytest.mark.parametrize(
    ("body", "content_type", "error", "status"),
    [
        (b"\x89PNG\r\n\x1a\n garbage", "image/png", inference.InvalidImageError, 400),
        (b"", "image/png", inference.EmptyBodyError, 400),
        (b"{}", "application/json", inference.UnsupportedContentTypeError, 415),
        (png_bomb(), "image/png", inference.ImageTooLargeError, 413),
    ],
)
def test_bad_input_is_a_named_error_with_status(body, content_type, error, status):
    with pytest.raises(error) as raised:
        inference.input_fn(body, content_type)
    assert raised.value.status_code == status


def test_unsupported_accept_is_406(model):
    with pytest.raises(inference.UnsupportedAcceptError) as raised:
        inference.output_fn(np.array([[0.5, 0.5]]), "text/csv")
    assert raised.value.status_code == 406
    assert inference.output_fn(np.array([[0.25, 0.75]]), "application/json, */*") == b"[0.25, 0.75]"


def test_model_dir_missing_labels_is_a_startup_error(tiny_model, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(tiny_model, broken)
    (broken / "labels.json").unlink()
    with pytest.raises(inference.ModelLoadError, match=r"lacks labels\.json"):
        inference.model_fn(broken)
