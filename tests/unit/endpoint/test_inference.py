"""The four SageMaker handlers, called with plain bytes as the container and our server call them."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from helpers import png_bomb
from PIL import Image, ImageFile

from services.endpoint import inference


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def model(tiny_model):
    return inference.model_fn(tiny_model)


RGB = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8), "RGB")


def with_alpha(image: Image.Image, alpha: np.ndarray) -> Image.Image:
    rgba = image.convert("RGBA")
    rgba.putalpha(Image.fromarray(alpha.astype(np.uint8), "L"))
    return rgba


def transparent_checkerboard() -> tuple[Image.Image, np.ndarray]:
    """RGBA with every other pixel fully transparent, and its RGB equivalent (transparent → white)."""
    mask = (np.indices((32, 32)).sum(axis=0) % 2).astype(bool)
    expected = np.asarray(RGB).copy()
    expected[mask] = 255
    return with_alpha(RGB, np.where(mask, 0, 255)), expected


def palette_with_transparency() -> tuple[Image.Image, np.ndarray]:
    """A P image whose palette index 0 is transparent, and its RGB equivalent."""
    quantized = RGB.quantize(64)
    quantized.info["transparency"] = 0
    expected = np.asarray(quantized.convert("RGB")).copy()
    expected[np.asarray(quantized) == 0] = 255
    return quantized, expected


GRAY = RGB.convert("L").convert("RGB")  # the RGB image a gray one stands for
QUANTIZED = RGB.quantize(64)  # ≤ 256 colours: a palette PNG holds them exactly
CHECKERBOARD, CHECKERBOARD_RGB = transparent_checkerboard()
PALETTE_T, PALETTE_T_RGB = palette_with_transparency()

EXACT = [  # (sent image, format, content type, the RGB 32×32 pixels it stands for)
    ("RGB", RGB, "PNG", "image/png", np.asarray(RGB)),
    ("L", RGB.convert("L"), "PNG", "image/png", np.asarray(GRAY)),
    ("P", QUANTIZED, "PNG", "application/x-image", np.asarray(QUANTIZED.convert("RGB"))),
    ("P-transparent", PALETTE_T, "PNG", "image/png", PALETTE_T_RGB),
    ("RGBA-opaque", RGB.convert("RGBA"), "PNG", "image/png", np.asarray(RGB)),
    ("RGBA-transparent", CHECKERBOARD, "PNG", "image/png", CHECKERBOARD_RGB),
    ("LA", with_alpha(RGB.convert("L"), np.full((32, 32), 255)).convert("LA"), "PNG", "image/png", np.asarray(GRAY)),
    ("CMYK-TIFF", RGB.convert("CMYK"), "TIFF", "application/x-image", np.asarray(RGB)),
]


@pytest.mark.parametrize(("mode", "image", "fmt", "content_type", "expected"), EXACT, ids=[e[0] for e in EXACT])
def test_every_mode_gives_the_pixels_and_predictions_of_its_rgb_original(
    model, mode, image, fmt, content_type, expected
):
    # given an image in some mode, and the RGB 32×32 pixels it stands for
    assert image.mode == mode.split("-")[0]
    # when it is decoded as the server decodes it
    batch = inference.input_fn(encode(image, fmt), content_type)
    # then the pixels are exactly those, and so are the probabilities
    assert batch.shape == (1, 32, 32, 3) and batch.dtype == np.uint8
    np.testing.assert_array_equal(batch[0], expected)
    np.testing.assert_array_equal(inference.predict_fn(batch, model), inference.predict_fn(expected[None], model))


def smooth_rgb() -> Image.Image:
    """A smooth 32×32 image (low frequencies only): resizing it up and back down loses almost nothing."""
    y, x = np.mgrid[0:32, 0:32] / 31.0
    channels = [0.5 + 0.4 * np.sin(2 * x + 1), 0.5 + 0.4 * np.cos(3 * y), 0.3 + 0.3 * x * y + 0.2 * np.sin(x + y)]
    return Image.fromarray((np.stack(channels, axis=-1) * 255).round().astype(np.uint8), "RGB")


SMOOTH = smooth_rgb()


@pytest.mark.parametrize(
    ("image", "content_type"),
    [
        (SMOOTH, "image/jpeg"),
        (SMOOTH.convert("L"), "image/jpeg"),
        (SMOOTH.convert("CMYK"), "image/jpeg; charset=binary"),
    ],
    ids=["RGB", "L", "CMYK"],
)
def test_jpeg_gives_the_pixels_and_predictions_of_its_rgb_original_within_compression_error(model, image, content_type):
    body = encode(image, "JPEG")
    batch = inference.input_fn(body, content_type)
    original = np.asarray(image.convert("RGB"))
    assert batch.shape == (1, 32, 32, 3)
    assert np.abs(batch[0].astype(int) - original.astype(int)).mean() < 3  # JPEG's loss on a smooth image
    np.testing.assert_allclose(
        inference.predict_fn(batch, model), inference.predict_fn(original[None], model), atol=0.02
    )


@pytest.mark.parametrize(("size", "fmt"), [((96, 96), "PNG"), ((500, 400), "PNG"), ((64, 48), "JPEG")])
def test_a_resized_image_gives_nearly_the_pixels_and_predictions_of_the_original(model, size, fmt):
    original = SMOOTH
    batch = inference.input_fn(encode(original.resize(size, Image.Resampling.BICUBIC), fmt), "image/png")
    assert batch.shape == (1, 32, 32, 3)
    diff = np.abs(batch[0].astype(int) - np.asarray(original).astype(int))
    assert diff.mean() < 1.5 and diff.max() <= 8  # measured: mean 0.02–1.2, max 1–6 levels
    np.testing.assert_allclose(
        inference.predict_fn(batch, model), inference.predict_fn(np.asarray(original)[None], model), atol=0.02
    )


def test_transparent_pixels_become_white():
    clear = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    assert (inference.decode(encode(clear), "image/png") == 255).all()


def test_serving_preprocesses_exactly_as_training_did(model, tiny_staged):
    import torch

    from scones.data.lst import load_images
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
        (b"{}", "text/plain", inference.UnsupportedContentTypeError, 415),
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


def test_labels_that_do_not_match_the_outputs_are_refused_at_load(tiny_model, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(tiny_model, broken)
    (broken / "labels.json").write_text(json.dumps(["bicycle", "motorcycle", "tractor"]))
    with pytest.raises(inference.ModelLoadError, match=r"2 outputs but labels\.json names 3 classes"):
        inference.model_fn(broken)


def test_model_dir_missing_labels_is_a_startup_error(tiny_model, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(tiny_model, broken)
    (broken / "labels.json").unlink()
    with pytest.raises(inference.ModelLoadError, match=r"lacks labels\.json"):
        inference.model_fn(broken)


# --- the SageMaker inference toolkit's own code calls the handlers -------------------------------------------


class ToolkitContext:
    """What sagemaker_inference's Transformer reads from TorchServe's context, and what it sets on it."""

    def __init__(self, model_dir, content_type: str, accept: str = "application/json") -> None:
        self.system_properties = {"model_dir": str(model_dir)}
        headers = {"Content-Type": content_type, "Accept": accept}
        self.request_processor = [type("RequestProcessor", (), {"get_request_properties": lambda _self: headers})()]
        self.status: tuple[int, str] | None = None
        self.content_type: str | None = None

    def set_response_status(self, code: int, phrase: str) -> None:
        self.status = (code, phrase)

    def set_response_content_type(self, index: int, content_type: str) -> None:
        self.content_type = content_type


@pytest.fixture
def toolkit(tiny_model, monkeypatch):
    """sagemaker-inference's Transformer with code/inference.py as its user module, as the container loads it."""
    import sys

    transformer = pytest.importorskip("sagemaker_inference.transformer", reason="pip install sagemaker-inference")
    monkeypatch.setenv("SAGEMAKER_PROGRAM", "inference.py")
    monkeypatch.syspath_prepend(str(tiny_model / "code"))
    monkeypatch.delitem(sys.modules, "inference", raising=False)
    yield transformer.Transformer()
    sys.modules.pop("inference", None)


def test_the_toolkit_calls_every_handler_with_the_arguments_it_takes(toolkit, tiny_model, model):
    # given the toolkit's Transformer (its own parameter-counting rule) over the packed code/inference.py
    body = encode(RGB)
    context = ToolkitContext(tiny_model, "image/png")
    # when it serves a PNG as the container does: model_fn(model_dir[, context]), input_fn, predict_fn, output_fn
    answer = toolkit.transform([{"body": body}], context)
    # then no handler was refused or misfed, and the answer is our server's
    assert context.status is None, answer
    assert context.content_type == "application/json"
    assert answer == [inference.output_fn(inference.predict_fn(inference.input_fn(body, "image/png"), model))]


def test_model_fn_takes_the_context_the_toolkit_appends(toolkit, tiny_model):
    # given a handler with one parameter more than the toolkit passes: it appends its context
    context = ToolkitContext(tiny_model, "image/png")
    toolkit._context = context
    # when the toolkit calls model_fn by its own rule, then a model loads (the context is not a thread count)
    loaded = toolkit._run_handler_function(inference.model_fn, str(tiny_model))
    assert isinstance(loaded, inference.Model)


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{}", "text/plain", 415),
        (b"{}", "application/json", 400),  # a batch body must be a list of images
        (b"\x89PNG\r\n\x1a\n garbage", "image/png", 400),
        (b"", "image/png", 400),
    ],
)
def test_the_toolkit_answers_a_bad_request_with_its_status(toolkit, tiny_model, body, content_type, status):
    # given a request the handlers refuse
    context = ToolkitContext(tiny_model, content_type)
    # when the toolkit serves it, then its error handler sets our status and an HTTP reason phrase
    answer = toolkit.transform([{"body": body}], context)
    assert context.status is not None and context.status[0] == status, answer
    assert context.status[1]  # TorchServe sends it as the reason; None made the toolkit fail with a 503


def test_the_server_chooses_threads_with_load_and_model_fn_reads_the_setting(tiny_model, monkeypatch):
    # given the local server's loader with an explicit thread count, and model_fn under $SCONES_ORT_THREADS
    loaded = inference.load(tiny_model, threads=1)
    monkeypatch.setenv("SCONES_ORT_THREADS", "2")
    by_setting = inference.model_fn(tiny_model, context=object())  # whatever context the toolkit appends
    # then each session has the threads it was given
    assert loaded.session.get_session_options().intra_op_num_threads == 1
    assert by_setting.session.get_session_options().intra_op_num_threads == 2


def test_the_limits_read_by_literal_name_are_the_settings_names_and_defaults():
    # inference.py imports nothing of the repository: its names and defaults must still be the settings'
    from scones.core import settings

    assert inference.MAX_PIXELS_ENV == settings.MAX_IMAGE_PIXELS
    assert inference.MAX_PAYLOAD_ENV == settings.MAX_PAYLOAD_MB
    assert inference.DEFAULT_MAX_PIXELS == settings.DEFAULT_MAX_IMAGE_PIXELS == settings.max_image_pixels()
    assert int(inference.DEFAULT_MAX_PAYLOAD_MB * 1024 * 1024) == settings.max_payload_bytes()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"])
def test_the_accepted_formats_decode(fmt):
    assert inference.input_fn(encode(RGB, fmt), "application/x-image").shape == (1, 32, 32, 3)


@pytest.mark.parametrize("fmt", ["PPM", "TGA", "PCX", "ICO"])
def test_formats_outside_the_list_are_refused_though_pillow_reads_them(fmt):
    # given an image in a format Pillow decodes but the endpoint does not accept
    body = encode(RGB, fmt)
    assert Image.open(io.BytesIO(body)).format == fmt
    # then it is a 400 naming the accepted formats
    with pytest.raises(inference.InvalidImageError, match="PNG, JPEG, GIF, BMP, WEBP, TIFF") as raised:
        inference.input_fn(body, "application/x-image")
    assert raised.value.status_code == 400


def test_an_eps_body_never_reaches_pillows_eps_parser(monkeypatch):
    # given Pillow's EPS plugin (which would run Ghostscript to decode), watched
    from PIL import EpsImagePlugin

    opened = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: opened.append(1))
    body = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\nshowpage\n"
    # when an EPS body is sent, then it is refused and the plugin never ran
    with pytest.raises(inference.InvalidImageError):
        inference.input_fn(body, "application/x-image")
    assert opened == []


def test_a_body_over_the_payload_limit_is_413_before_decoding(monkeypatch):
    monkeypatch.setattr(inference, "MAX_BODY_BYTES", 100)
    with pytest.raises(inference.ImageTooLargeError, match="exceeds the limit of 100 bytes") as raised:
        inference.input_fn(encode(RGB), "image/png")
    assert raised.value.status_code == 413


def test_pixels_over_the_limit_are_413_before_any_pixel_is_decoded(monkeypatch):
    # given a limit below the image's size, and Pillow's decoder watched
    body = encode(RGB)
    monkeypatch.setattr(inference, "MAX_PIXELS", 32 * 31)
    loads = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(1))
    with pytest.raises(inference.ImageTooLargeError, match="exceeds the limit of 992 pixels") as raised:
        inference.input_fn(body, "image/png")
    assert raised.value.status_code == 413 and loads == []


# --- the batch body: many images in one request (what a backfill sends) --------------------------------------


def batch_body(*images: Image.Image) -> bytes:
    import base64

    return json.dumps([base64.b64encode(encode(i)).decode() for i in images]).encode()


def test_a_json_batch_answers_one_list_per_image_equal_to_the_single_answers(model):
    # given two images sent one by one, and the same two as one batch body
    other = Image.fromarray(np.random.default_rng(5).integers(0, 256, (32, 32, 3), dtype=np.uint8), "RGB")
    singles = [
        json.loads(inference.output_fn(inference.predict_fn(inference.input_fn(encode(i), "image/png"), model)))
        for i in (RGB, other)
    ]
    # when the batch is served
    answer = json.loads(
        inference.output_fn(inference.predict_fn(inference.input_fn(batch_body(RGB, other), "application/json"), model))
    )
    # then it is a list per image, in order, each the single answer
    assert answer == singles
    assert all(isinstance(p, float) for p in singles[0])  # the single contract is unchanged: a flat list


def test_a_batch_of_one_is_still_a_list_of_lists(model):
    answer = json.loads(
        inference.output_fn(inference.predict_fn(inference.input_fn(batch_body(RGB), "application/json"), model))
    )
    assert len(answer) == 1 and isinstance(answer[0], list)


def test_an_npy_batch_answers_like_the_json_batch(model):
    # given the same pixels as a uint8 N×H×W×3 .npy body (one image at another size: resized like a file)
    buffer = io.BytesIO()
    np.save(buffer, np.stack([np.asarray(RGB), np.asarray(RGB)]))
    as_npy = json.loads(
        inference.output_fn(inference.predict_fn(inference.input_fn(buffer.getvalue(), inference.NPY), model))
    )
    as_json = json.loads(
        inference.output_fn(inference.predict_fn(inference.input_fn(batch_body(RGB, RGB), "application/json"), model))
    )
    np.testing.assert_allclose(as_npy, as_json, atol=1e-6)
    big = io.BytesIO()
    np.save(big, np.stack([np.asarray(RGB.resize((64, 64)))]))
    assert inference.input_fn(big.getvalue(), inference.NPY).shape == (1, 32, 32, 3)


@pytest.mark.parametrize(
    ("body", "content_type", "message", "status"),
    [
        (b"", "application/json", "empty", 400),
        (b"[]", "application/json", "empty list", 400),
        (b"{}", "application/json", "JSON dict", 400),
        (b"not json", "application/json", "not JSON", 400),
        (b'["aGVsbG8=", 3]', "application/json", "image 0 of the batch", 400),  # 'hello' is no image
        (b'["%%%"]', "application/json", "image 0 of the batch is not base64", 400),
        (b"garbage", inference.NPY, "not a .npy", 400),
    ],
)
def test_a_bad_batch_is_a_named_error_with_status(body, content_type, message, status):
    with pytest.raises(inference.InferenceError, match=message) as raised:
        inference.input_fn(body, content_type)
    assert raised.value.status_code == status


def test_a_bad_image_inside_a_batch_is_named_by_its_index():
    body = json.dumps([json.loads(batch_body(RGB))[0], 7]).encode()
    with pytest.raises(inference.InvalidImageError, match="image 1 of the batch is a int"):
        inference.input_fn(body, "application/json")


def test_an_npy_of_the_wrong_shape_or_type_is_refused():
    for array in (np.zeros((2, 32, 32), np.uint8), np.zeros((1, 32, 32, 3), np.float32)):
        buffer = io.BytesIO()
        np.save(buffer, array)
        with pytest.raises(inference.InvalidImageError, match="uint8 N×H×W×3"):
            inference.input_fn(buffer.getvalue(), inference.NPY)


def test_a_batch_over_the_limits_is_413_naming_the_limit(monkeypatch):
    # the payload limit holds for the whole body, the pixel limit for each image (JSON and .npy alike)
    monkeypatch.setattr(inference, "MAX_BODY_BYTES", 100)
    with pytest.raises(inference.ImageTooLargeError, match="SCONES_MAX_PAYLOAD_MB") as raised:
        inference.input_fn(batch_body(RGB, RGB), "application/json")
    assert raised.value.status_code == 413
    monkeypatch.setattr(inference, "MAX_BODY_BYTES", 10**7)
    monkeypatch.setattr(inference, "MAX_PIXELS", 32 * 31)
    with pytest.raises(inference.ImageTooLargeError, match=r"image 1 of the batch: .*SCONES_MAX_IMAGE_PIXELS"):
        inference.input_fn(
            json.dumps([json.loads(batch_body(RGB.resize((31, 32))))[0], json.loads(batch_body(RGB))[0]]).encode(),
            "application/json",
        )
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((1, 32, 32, 3), np.uint8))
    with pytest.raises(inference.ImageTooLargeError, match="SCONES_MAX_IMAGE_PIXELS"):
        inference.input_fn(buffer.getvalue(), inference.NPY)


def test_the_toolkit_serves_a_batch_body(toolkit, tiny_model, model):
    # given the inference toolkit's Transformer over code/inference.py, and a JSON batch
    body = batch_body(RGB, RGB)
    context = ToolkitContext(tiny_model, "application/json")
    # when it serves the batch as the container would
    answer = toolkit.transform([{"body": body}], context)
    # then it answers our list of lists
    assert context.status is None, answer
    assert answer == [inference.output_fn(inference.predict_fn(inference.input_fn(body, "application/json"), model))]
