"""SageMaker inference handlers for the scones classifier: model_fn, input_fn, predict_fn, output_fn.

The same file serves three ways: imported by our local model server (services/endpoint/app.py), packed
as `code/inference.py` into model.tar.gz for the SageMaker PyTorch inference container, and called by
tests with plain bytes. Dependencies: numpy, Pillow, onnxruntime (code/requirements.txt).

Wire format (the built-in image-classification algorithm's): the request body is the image bytes
(image/png, image/jpeg, application/x-image); the response is a JSON list of probabilities in labels.json
order, e.g. [0.998, 0.0013].

Batch format (one request, many images; what a backfill sends): `application/json`, a JSON list of
base64-encoded image files, or `application/x-npy`, one uint8 N×H×W×3 array in NumPy's .npy format (no
pickles). The answer is one probability list per image, in order: [[0.998, 0.0013], [0.02, 0.98]]. The
payload and pixel limits hold for the whole body and for each image; a bad image is a 400 naming its index.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_CONTENT_TYPES = ("image/png", "image/jpeg", "image/jpg", "application/x-image", "image/x-image")
JSON = "application/json"
NPY = "application/x-npy"
BATCH_CONTENT_TYPES = (JSON, NPY)
# Limits, read by literal name: this file imports nothing of the repository (it runs in SageMaker's container).
# scones/core/settings.py defines the same names and defaults; tests/unit/endpoint/test_inference.py checks them.
MAX_PIXELS_ENV = "SCONES_MAX_IMAGE_PIXELS"  # images of more pixels are refused before decoding (413)
MAX_PAYLOAD_ENV = "SCONES_MAX_PAYLOAD_MB"  # bodies above this are refused before decoding (413)
DEFAULT_MAX_PIXELS = 4096 * 4096
DEFAULT_MAX_PAYLOAD_MB = 6.0
# Only these decoders ever see a body: Pillow would otherwise try every format it knows (EPS runs Ghostscript).
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")


def _env_number(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, "") or default)
    except ValueError:
        return default
    return value if value > 0 else default


MAX_PIXELS = int(_env_number(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS))
MAX_BODY_BYTES = int(_env_number(MAX_PAYLOAD_ENV, DEFAULT_MAX_PAYLOAD_MB) * 1024 * 1024)
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow's own guard (DecompressionBombError at twice this) behind ours

try:  # inside the SageMaker inference toolkit, its error class carries the HTTP status to the client
    from sagemaker_inference.errors import GenericInferenceToolkitError as _Base  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - the toolkit exists only in SageMaker's containers

    class _Base(Exception):  # type: ignore[no-redef]
        def __init__(self, status_code: int, message: str, phrase: str | None = None) -> None:
            super().__init__(message)
            self.status_code, self.message, self.phrase = status_code, message, phrase


class InferenceError(_Base):
    """An error answered to the client with `status_code`; the server stays up."""

    status_code = 400

    def __init__(self, message: str) -> None:
        # The toolkit's handle_error sends `phrase` as the HTTP reason (None there is an AttributeError that
        # TorchServe answers with a 503, whatever the status).
        super().__init__(type(self).status_code, message, HTTPStatus(type(self).status_code).phrase)
        self.status_code = type(self).status_code
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidImageError(InferenceError):
    status_code = 400


class EmptyBodyError(InferenceError):
    status_code = 400


class ImageTooLargeError(InferenceError):
    status_code = 413


class UnsupportedContentTypeError(InferenceError):
    status_code = 415


class UnsupportedAcceptError(InferenceError):
    status_code = 406


class ModelLoadError(RuntimeError):
    """The model folder cannot be served (named file missing or unreadable)."""


@dataclass
class Model:
    session: object  # onnxruntime.InferenceSession
    labels: list[str]
    mean: np.ndarray  # per channel, after scaling
    std: np.ndarray
    scale: float
    size: tuple[int, int]  # (width, height)
    input_name: str


def check_model_dir(model_dir: Path) -> None:
    """A clear error before anything loads when a file the server needs is missing."""
    missing = [n for n in ("model.onnx", "labels.json", "config.json") if not (model_dir / n).is_file()]
    if missing:
        raise ModelLoadError(
            f"model folder {model_dir} lacks {', '.join(missing)} (a scones training artifact has all three)"
        )


def model_fn(model_dir: str | os.PathLike, context: object = None) -> Model:
    """SageMaker's model_fn: load the model once (onnxruntime threads from $SCONES_ORT_THREADS, else all cores).

    The inference toolkit counts a handler's parameters and, when there is one more than it passes, appends its
    context (TorchServe's, in the PyTorch container): so the second parameter is that context and nothing else.
    Our own server chooses the thread count with `load`."""
    return load(model_dir)


def load(model_dir: str | os.PathLike, threads: int | None = None) -> Model:
    """Load model.onnx, labels.json and config.json once; refuse a model whose outputs and labels disagree.

    threads: onnxruntime intra-op threads (None: $SCONES_ORT_THREADS, else 0 = onnxruntime's default, all
    cores). A server running several worker processes gives each cores / workers."""
    import onnxruntime as ort

    model_dir = Path(model_dir)
    check_model_dir(model_dir)
    try:
        labels = json.loads((model_dir / "labels.json").read_text())
        pre = json.loads((model_dir / "config.json").read_text())["preprocessing"]
    except (ValueError, KeyError) as exc:
        raise ModelLoadError(f"model folder {model_dir}: unreadable labels.json or config.json ({exc})") from exc
    if threads is None:
        threads = int(os.environ.get("SCONES_ORT_THREADS", "0") or 0)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle onnxruntime threads spin by default; in a server they would burn the cores the HTTP layer needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
    width, height = pre["input_size"][1], pre["input_size"][0]
    model = Model(
        session=session,
        labels=list(labels),
        mean=np.array(pre["mean"], np.float32),
        std=np.array(pre["std"], np.float32),
        scale=float(pre["scale"]),
        size=(width, height),
        input_name=session.get_inputs()[0].name,
    )
    outputs = predict_fn(np.zeros((1, height, width, 3), np.uint8), model).shape[-1]  # also warms the session
    if outputs != len(model.labels):
        raise ModelLoadError(
            f"model folder {model_dir}: the model has {outputs} outputs but labels.json names {len(model.labels)} "
            f"classes (a labels.json from another training run?)"
        )
    return model


def decode(request_body: bytes, content_type: str | None, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    """Image bytes → uint8 H×W×3 RGB at the model's size. Any mode (RGBA, L, P, CMYK) becomes RGB."""
    if media_type(content_type) not in IMAGE_CONTENT_TYPES:
        raise UnsupportedContentTypeError(
            f"content type {content_type!r} is not supported; send image bytes as {', '.join(IMAGE_CONTENT_TYPES[:3])} "
            f"or a batch as {' or '.join(BATCH_CONTENT_TYPES)}"
        )
    if not request_body:
        raise EmptyBodyError("the request body is empty: send the image bytes")
    try:
        image = Image.open(io.BytesIO(request_body), formats=FORMATS)  # reads the header only
        width, height = image.size
        if width * height > MAX_PIXELS:  # before any pixel is decoded
            raise ImageTooLargeError(
                f"image of {width}×{height} pixels exceeds the limit of {MAX_PIXELS} pixels ({MAX_PIXELS_ENV})"
            )
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            if image.mode != "RGBA":
                image = image.convert("RGBA")
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            background.alpha_composite(image)  # in place: transparent pixels become white, not black
            image = background
            del background
        image = image.convert("RGB")
        if image.size != size:
            image = image.resize(size, Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)
    except InferenceError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"image refused: {exc}") from exc
    except UnidentifiedImageError:
        raise InvalidImageError(
            f"the body is not an image of an accepted format ({', '.join(FORMATS)}): send PNG or JPEG bytes"
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidImageError(f"the body is not a readable image ({type(exc).__name__}: {exc})") from exc


class Batch(np.ndarray):
    """Images (or their probabilities) that came as a batch body: output_fn answers a list per image."""


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def is_batch(content_type: str | None) -> bool:
    return media_type(content_type) in BATCH_CONTENT_TYPES


def decode_batch(request_body: bytes, content_type: str | None, size: tuple[int, int] = (32, 32)) -> Batch:
    """A batch body (a JSON list of base64 images, or an N×H×W×3 uint8 .npy) → uint8 N×H×W×3 at the model's size."""
    if not request_body:
        raise EmptyBodyError("the request body is empty: send a JSON list of base64 images")
    if media_type(content_type) == NPY:
        images = _npy_images(request_body, size)
    else:
        images = np.stack([_image_of(i, item, size) for i, item in enumerate(_json_list(request_body))])
    return images.view(Batch)


def _json_list(body: bytes) -> list:
    try:
        items = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidImageError("the batch body is not JSON: send a JSON list of base64-encoded images") from None
    if not isinstance(items, list):
        raise InvalidImageError(f"the batch body is a JSON {type(items).__name__}: send a list of base64 images")
    if not items:
        raise EmptyBodyError("the batch is an empty list: send at least one base64 image")
    return items


def _image_of(index: int, item: object, size: tuple[int, int]) -> np.ndarray:
    if not isinstance(item, str):
        raise InvalidImageError(f"image {index} of the batch is a {type(item).__name__}, not a base64 string")
    try:
        data = base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImageError(f"image {index} of the batch is not base64") from None
    try:
        return decode(data, "application/x-image", size)
    except InferenceError as exc:
        raise type(exc)(f"image {index} of the batch: {exc.message}") from None


def _npy_images(body: bytes, size: tuple[int, int]) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InvalidImageError(f"the body is not a .npy array ({exc})") from None
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8 or not len(array):
        raise InvalidImageError(
            f"the .npy body is a {array.dtype} array of shape {array.shape}: send uint8 N×H×W×3 (RGB) images"
        )
    height, width = array.shape[1:3]
    if width * height > MAX_PIXELS:
        raise ImageTooLargeError(
            f"images of {width}×{height} pixels exceed the limit of {MAX_PIXELS} pixels ({MAX_PIXELS_ENV})"
        )
    if (width, height) == size:
        return np.ascontiguousarray(array)
    return np.stack([np.asarray(Image.fromarray(a).resize(size, Image.Resampling.BILINEAR)) for a in array])


def preprocess(images: np.ndarray, model: Model) -> np.ndarray:
    """uint8 N×H×W×3 → float32 N×3×H×W, exactly as config.json's `preprocessing` says."""
    x = images.astype(np.float32) * np.float32(model.scale)
    x = (x - model.mean) / model.std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def input_fn(request_body: bytes, request_content_type: str) -> np.ndarray:
    """SageMaker's input_fn: the decoded image as a 1×32×32×3 uint8 batch (normalised in predict_fn); a batch
    body (application/json, application/x-npy) as an N×32×32×3 Batch."""
    if len(request_body) > MAX_BODY_BYTES:  # our server refuses it while reading; the container calls this
        raise ImageTooLargeError(
            f"body of {len(request_body)} bytes exceeds the limit of {MAX_BODY_BYTES} bytes ({MAX_PAYLOAD_ENV})"
        )
    if is_batch(request_content_type):
        return decode_batch(request_body, request_content_type)
    return decode(request_body, request_content_type)[None]


def predict_fn(input_data: np.ndarray, model: Model) -> np.ndarray:
    """A batch of decoded images (N×H×W×3 uint8) → N×classes calibrated probabilities (a Batch for a Batch)."""
    probabilities = model.session.run(None, {model.input_name: preprocess(np.asarray(input_data), model)})[0]
    return probabilities.view(Batch) if isinstance(input_data, Batch) else probabilities


def check_accept(accept: str | None) -> None:
    media_types = [part.split(";")[0].strip().lower() for part in (accept or JSON).split(",")]
    if not any(m in (JSON, "*/*", "application/*", "") for m in media_types):
        raise UnsupportedAcceptError(f"accept {accept!r} is not supported; the endpoint answers {JSON}")


def output_fn(prediction: np.ndarray, accept: str | None = JSON) -> bytes:
    """One image's probabilities as a JSON list (the built-in algorithm's format); a Batch's as a list of lists."""
    check_accept(accept)
    if isinstance(prediction, Batch):
        return json.dumps([[round(float(p), 6) for p in row] for row in np.asarray(prediction)]).encode()
    row = prediction[0] if prediction.ndim == 2 else prediction
    return json.dumps([round(float(p), 6) for p in row]).encode()
