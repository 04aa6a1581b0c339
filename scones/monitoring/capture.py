"""Read every record of every data-capture file under a prefix into running statistics, counting what cannot be read.

The record format is the endpoint's (services/endpoint/capture.py), which is SageMaker's: a JSON line with
`captureData.endpointInput` (the image, BASE64) and `captureData.endpointOutput` (the probabilities, JSON).
A file holds many lines and every line is read. A line that cannot be used is counted under a reason
(never a crash, never dropped silently): the caller prints the counts.

Memory does not grow with the number of records: each file becomes a `CaptureTable` of its own (in a worker
process, one per core) holding only what the drift checks need — per feature a histogram on fixed bins
(drift.EDGES), count, sum, sum of squares, min and max; the class counts; the records below the threshold — and a
uniform sample of at most `SAMPLE` rows (the rows with the smallest hash of file and line, so the sample is the
same whatever the number of workers) for the plots and records.csv. Tables merge by adding.

A batch request (the endpoint's batch body, docs/backfill.md) is one record: `endpointInput` is the body as sent —
`application/json`, a JSON list of base64 images, or `application/x-npy`, an N×H×W×3 uint8 array — and
`endpointOutput` a JSON list of N probability lists. It becomes N rows, image i paired with output row i; a batch whose
counts differ, or with one bad image or output row, is one record not parseable under its reason.

A record is valid when its probabilities are finite, in [0, 1] and sum to 1 ± 1e-3 (issue #21). Its
`inferenceTime` is kept; with `since`, records without a valid one are counted and left out, and files whose
key hour (`…/yyyy/mm/dd/hh/`) ends before `since` are not even downloaded.

Columns of a row: time, file, predicted, confidence, margin, brightness, contrast, width, height.
Brightness and contrast are the mean and standard deviation of the image's grey levels on 0..1, after the
serving decoder's own conversion (RGBA and palette images composited on white, as the endpoint does).
"""

from __future__ import annotations

import base64
import binascii
import heapq
import io
import json
import math
import multiprocessing
import os
import re
import struct
import sys
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

from scones.core import aws
from scones.monitoring import drift
from scones.monitoring.drift import histogram
from services.endpoint import inference

try:  # orjson: ~2.5× faster than the standard library on a 4 KB capture line; it refuses NaN (json takes it)
    import orjson

    _fast_loads = orjson.loads
except ImportError:  # pragma: no cover - orjson is in the serve extra and the monitoring job's requirements
    _fast_loads = json.loads

COLUMNS = ("time", "file", "predicted", "confidence", "margin", "brightness", "contrast", "width", "height")
NUMERIC = ("confidence", "margin", "brightness", "contrast", "width", "height")
BINNED = drift.KS_FEATURES  # histogrammed on drift.EDGES
SAMPLE = 10_000  # rows kept for the plots and records.csv
SUM_TOLERANCE = 1e-3  # probabilities must sum to 1 within this
NUMBER = (int, float)  # what a probability may be in the JSON (a tuple: isinstance is quicker than with int | float)

# Reasons a record is not used, as printed. A `BadRecord` names one of them.
MALFORMED = "malformed or truncated JSON line"
NOT_A_RECORD = "JSON but not a capture record (no captureData.endpointInput/endpointOutput)"
INPUT_ENCODING = "unknown input encoding"
OUTPUT_ENCODING = "unknown output encoding"
BAD_IMAGE = "input is not a readable image"
BAD_OUTPUT = "output is not a list of probabilities"
NOT_FINITE = "output holds NaN or an infinity"
OUT_OF_RANGE = "output has a probability outside [0, 1]"
NOT_SUMMING = f"output probabilities do not sum to 1 (± {SUM_TOLERANCE:g})"
CLASS_COUNT = "output has a different number of classes than the baseline"
BATCH_LENGTHS = "batch: the number of images and of output rows differ"
BAD_BATCH_OUTPUT = "batch: output is not a list of probability lists"
NOT_TEXT = "file is not UTF-8 text"
# Records read and valid but left out of the analysis (`CaptureTable.excluded`), by reason.
BEFORE_SINCE = "inferenceTime before --since"
UNTIMED = "no valid inferenceTime (left out with --since)"


class BadRecord(ValueError):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class Moments:
    """Count, sum, sum of squares, min and max of one feature: mean and standard deviation without the values."""

    n: int = 0
    total: float = 0.0
    squares: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    def add(self, values: np.ndarray) -> None:
        if len(values):
            values = values.astype(np.float64)
            self.n += len(values)
            self.total += float(values.sum())
            self.squares += float(np.dot(values, values))
            self.low, self.high = min(self.low, float(values.min())), max(self.high, float(values.max()))

    def merge(self, other: Moments) -> None:
        self.n += other.n
        self.total += other.total
        self.squares += other.squares
        self.low, self.high = min(self.low, other.low), max(self.high, other.high)

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    @property
    def std(self) -> float:
        return math.sqrt(max(0.0, self.squares / self.n - self.mean**2)) if self.n else math.nan


@dataclass
class CaptureTable:
    """What a read found: running statistics of the usable records, a bounded sample of them, and the counts
    of the rest. Its size does not depend on the number of records."""

    labels: list[str] = field(default_factory=list)
    threshold: float = 0.0  # `below` counts confidences under it
    files: int = 0
    lines: int = 0
    parsed: int = 0  # valid records (analysed + excluded)
    bad: Counter = field(default_factory=Counter)  # reason -> records not parseable
    excluded: Counter = field(default_factory=Counter)  # reason -> valid records left out (--since)
    untimed: int = 0  # valid records without a valid inferenceTime (left out only with --since)
    batches: int = 0  # valid batch records (each gives one row per image)
    batch_images: int = 0  # the images they held
    bad_files: list[str] = field(default_factory=list)  # files with no usable record at all (the first 100)
    bad_file_count: int = 0
    files_skipped: int = 0  # files whose key hour ended before --since: not read
    moments: dict[str, Moments] = field(default_factory=lambda: {n: Moments() for n in NUMERIC})
    hist: dict[str, np.ndarray] = field(default_factory=lambda: {n: histogram(np.empty(0)) for n in BINNED})
    classes: Counter = field(default_factory=Counter)  # predicted label -> records
    below: int = 0  # records with confidence < threshold
    first: float = math.inf  # earliest and latest inferenceTime (epoch seconds) analysed
    last: float = -math.inf
    sample: list[tuple] = field(default_factory=list)  # (-key, file, line, row): a max-heap on the key
    ceiling: int = 0xFFFFFFFF  # a row whose key is above it cannot enter the sample this table merges into: not made

    @property
    def analysed(self) -> int:
        return self.moments["confidence"].n

    @property
    def unparseable(self) -> int:
        return sum(self.bad.values())

    @property
    def rows(self) -> list[dict]:
        """The sampled rows in file and line order (every row while there are at most SAMPLE)."""
        return [r for _, _, _, r in sorted(self.sample, key=lambda s: (s[1], s[2]))]

    def frame(self):
        """The sampled rows as a table sorted by time (pandas)."""
        import pandas as pd

        frame = pd.DataFrame(self.rows, columns=list(COLUMNS))
        frame["time"] = pd.to_datetime(frame["time"], utc=True, errors="coerce")
        return frame.sort_values("time", kind="stable").reset_index(drop=True)

    def counts(self) -> drift.Counts:
        """What the drift checks read."""
        means = {name: self.moments[name].mean for name in BINNED}
        return drift.Counts(self.analysed, self.hist, means, dict(self.classes), self.below)

    def sample_ceiling(self) -> int:
        """The largest key a row may have and still enter the sample (a full sample only takes smaller keys)."""
        if len(self.sample) < SAMPLE:
            return self.ceiling
        return min(self.ceiling, -self.sample[0][0])

    def keep(self, key: int, name: str, line: int, row: dict) -> None:
        item = (-key, name, line, row)
        if len(self.sample) < SAMPLE:
            heapq.heappush(self.sample, item)
        elif item > self.sample[0]:  # a smaller key than the largest kept
            heapq.heapreplace(self.sample, item)

    def add_bad_file(self, name: str) -> None:
        self.bad_file_count += 1
        if len(self.bad_files) < 100:
            self.bad_files.append(name)

    def merge(self, part: CaptureTable) -> None:
        self.files += part.files
        self.lines += part.lines
        self.parsed += part.parsed
        self.bad.update(part.bad)
        self.excluded.update(part.excluded)
        self.untimed += part.untimed
        self.batches += part.batches
        self.batch_images += part.batch_images
        self.files_skipped += part.files_skipped
        for name in part.bad_files[: max(0, 100 - len(self.bad_files))]:
            self.bad_files.append(name)
        self.bad_file_count += part.bad_file_count
        for name in NUMERIC:
            self.moments[name].merge(part.moments[name])
        for name in BINNED:
            self.hist[name] = self.hist[name] + part.hist[name]
        self.classes.update(part.classes)
        self.below += part.below
        self.first, self.last = min(self.first, part.first), max(self.last, part.last)
        for item in part.sample:
            self.keep(-item[0], item[1], item[2], item[3])

    def summary(self) -> str:
        text = (
            f"read {self.files} file(s), {self.lines} record(s): {self.parsed} parsed, {self.unparseable} not parseable"
        )
        if self.batches:
            text += f"\n  {self.batches:>7} of them batch records of {self.batch_images} images: one row per image"
        for reason, n in self.bad.most_common():
            text += f"\n  {n:>7} {reason}"
        if self.files_skipped:
            text += f"\n  {self.files_skipped} file(s) before --since by their key's hour: not read"
        for reason, n in self.excluded.most_common():
            text += f"\n  {n:>7} left out: {reason}"
        return text


# --- one record -------------------------------------------------------------------------------------------


def image_size(body: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG header (no decoding); None for other formats."""
    if body[:8] == b"\x89PNG\r\n\x1a\n" and body[12:16] == b"IHDR":
        return int.from_bytes(body[16:20], "big"), int.from_bytes(body[20:24], "big")
    return None


def _plain_idat(body: bytes, size: tuple[int, int]) -> bytes | None:
    """The image data of an 8-bit RGB, non-interlaced PNG of exactly `size` with every chunk's CRC right and no
    transparency: the serving decoder would neither convert nor resize it, so its IDAT data can go straight to
    Pillow's PNG decoder (half the cost of Image.open). Anything else: None, and the serving decoder decides."""
    if image_size(body) != size:
        return None
    pos, idat, end = 8, [], len(body)
    while pos + 12 <= end:
        length, kind = struct.unpack_from(">I4s", body, pos)
        stop = pos + 8 + length
        if stop + 4 > end:
            return None
        if zlib.crc32(memoryview(body)[pos + 4 : stop]) != int.from_bytes(body[stop : stop + 4], "big"):
            return None
        if kind == b"IHDR":
            depth, colour, interlace = body[pos + 16], body[pos + 17], body[pos + 20]
            if (depth, colour, interlace) != (8, 2, 0):
                return None
        elif kind == b"IDAT":
            idat.append(body[pos + 8 : stop])
        elif kind == b"IEND":
            break
        elif kind in (b"tRNS", b"PLTE"):
            return None
        pos = stop + 4
    return b"".join(idat) if idat else None


def _plain_png(body: bytes, size: tuple[int, int]) -> np.ndarray | None:
    """The pixels of a PNG that `_plain_idat` takes, decoded by Pillow's PNG decoder; None for any other."""
    idat = _plain_idat(body, size)
    if idat is None:
        return None
    try:
        return np.asarray(Image.frombytes("RGB", size, idat, "zip", "RGB"))
    except (ValueError, OSError):
        return None


class Canvas:
    """The plain PNGs of one file (`_plain_idat`), each decoded by its own Pillow PNG decoder into its slot of a tall
    image, read out 64 at a time (while in cache) and as one N×H×W×3 array at the end: what `_plain_png` gives,
    without an Image object and an array per record (~15 µs a record of ~100). Pillow's `Image.frombytes` does
    exactly this for one image (the decoder of `Image._getdecoder`, on the extents of the image); `FAST` says
    whether this Pillow does it as this class expects (else the reader takes `image_pixels` for every image)."""

    SLOTS = 64  # images per read-out

    def __init__(self, size: tuple[int, int] = (32, 32)) -> None:
        self.size, self.count, self.parts = size, 0, []
        self.image = Image.new("RGB", (size[0], size[1] * self.SLOTS))

    def put(self, body: bytes) -> int | None:
        """The slot `body` was decoded into, or None where `_plain_png` would give None."""
        idat = _plain_idat(body, self.size)
        if idat is None:
            return None
        width, height = self.size
        slot = self.count % self.SLOTS
        decoder = Image._getdecoder("RGB", "zip", ("RGB",))
        decoder.setimage(self.image.im, (0, slot * height, width, (slot + 1) * height))
        consumed, error = decoder.decode(idat)
        if consumed >= 0 or error != 0:  # Image.frombytes: "not enough image data", "cannot decode image data"
            return None
        self.count += 1
        if slot == self.SLOTS - 1:
            self.parts.append(np.asarray(self.image).reshape(self.SLOTS, height, width, 3))
        return self.count - 1

    def pixels(self) -> np.ndarray:
        """Every decoded image, in slot order (count × H × W × 3, uint8)."""
        width, height = self.size
        parts, rest = self.parts, self.count % self.SLOTS
        if rest:
            parts = [*parts, np.asarray(self.image).reshape(self.SLOTS, height, width, 3)[:rest]]
        if not parts:
            return np.empty((0, height, width, 3), np.uint8)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _canvas_works() -> bool:
    """Whether this Pillow decodes into a slot as `_plain_png` does (checked once, on a 2×2 image)."""
    try:
        out = io.BytesIO()
        Image.fromarray(np.arange(12, dtype=np.uint8).reshape(2, 2, 3)).save(out, format="PNG")
        canvas = Canvas((2, 2))
        return canvas.put(out.getvalue()) == 0 and (canvas.pixels()[0] == _plain_png(out.getvalue(), (2, 2))).all()
    except Exception:  # a Pillow without the decoder interface: the public path, slower, same pixels
        return False


FAST = _canvas_works()


def image_pixels(body: bytes, content_type: str, size: tuple[int, int] = (32, 32)) -> tuple[np.ndarray, int, int]:
    """(pixels as the model sees them, width, height) of an image body; BadRecord when it is not an image."""
    pixels = _plain_png(body, size)
    if pixels is not None:
        return pixels, size[0], size[1]
    try:
        dims = image_size(body)
        if dims is None:
            with Image.open(io.BytesIO(body)) as probe:  # lazy: reads the header only
                dims = probe.size
        pixels = inference.decode(body, content_type, size)
    except inference.InferenceError as exc:
        raise BadRecord(BAD_IMAGE, str(exc)) from None
    except Exception as exc:  # PIL raises many types on a broken header
        raise BadRecord(BAD_IMAGE, f"{type(exc).__name__}: {exc}") from None
    return pixels, dims[0], dims[1]


GREY = np.array([0.299, 0.587, 0.114], np.float32) / np.float32(255)


GREY_CHUNK = 64  # images measured at once: the float temporaries stay in the CPU's cache (2.5× faster at 32×32)


def grey_levels(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the grey levels (0..1) of each image of an N×H×W×3 uint8 batch. Each image's
    figures depend on its own pixels only, so measuring the batch in chunks gives the very same numbers."""
    if len(pixels) > GREY_CHUNK:
        parts = [grey_levels(pixels[i : i + GREY_CHUNK]) for i in range(0, len(pixels), GREY_CHUNK)]
        return np.concatenate([mean for mean, _ in parts]), np.concatenate([std for _, std in parts])
    grey = pixels[..., 0] * GREY[0] + pixels[..., 1] * GREY[1] + pixels[..., 2] * GREY[2]
    grey = grey.reshape(len(pixels), -1)
    return grey.mean(1), grey.std(1)


def image_features(body: bytes, content_type: str) -> tuple[float, float, int, int]:
    """(brightness, contrast, width, height) of an image body. Brightness and contrast are measured on the
    image as the model sees it: decoded, converted and resized by the serving decoder itself."""
    pixels, width, height = image_pixels(body, content_type)
    mean, std = grey_levels(pixels[None])
    return float(mean[0]), float(std[0]), width, height


def decoded_output(output: dict) -> object:
    """The endpoint's answer, parsed, whatever its capture encoding: JSON, BASE64 (of JSON) or CSV (a list of numbers
    per line). Single-image and batch records both read their output through it; BadRecord otherwise."""
    data = output.get("data")
    if not isinstance(data, str):
        raise BadRecord(BAD_OUTPUT, "no data")
    encoding = output.get("encoding")
    if encoding != "JSON":  # the endpoint's own, and nearly every record: no upper() for it
        encoding = str(output.get("encoding", "")).upper()
    try:
        if encoding == "BASE64":
            data = base64.b64decode(data, validate=True).decode()
        elif encoding == "CSV":
            return [[float(x) for x in line.split(",")] for line in data.strip().splitlines()]
        elif encoding != "JSON":
            raise BadRecord(OUTPUT_ENCODING, repr(output.get("encoding")))
        try:
            return _fast_loads(data)
        except ValueError:
            return json.loads(data)  # NaN and Infinity: parsed, then refused by name
    except BadRecord:
        raise
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadRecord(BAD_OUTPUT, str(exc)) from None


def _probability_rows(output: dict, labels: list[str] | None) -> list[list[float]]:
    """A batch's answer: one checked probability list per image."""
    rows = decoded_output(output)
    if not isinstance(rows, list) or not rows or not all(isinstance(r, list) for r in rows):
        raise BadRecord(BAD_BATCH_OUTPUT, str(rows)[:60])
    found = []
    for i, values in enumerate(rows):
        if len(values) < 2 or not all(isinstance(v, NUMBER) for v in values):
            raise BadRecord(BAD_BATCH_OUTPUT, f"row {i}: {str(values)[:60]}")
        probs = checked([float(v) for v in values])
        if labels and len(probs) != len(labels):
            raise BadRecord(CLASS_COUNT, f"row {i}: {len(probs)} outputs, baseline has {len(labels)} classes")
        found.append(probs)
    return found


def _probabilities(output: dict) -> list[float]:
    """A single image's answer: one checked probability list (a list wrapped in a dict or in a list is unwrapped,
    as some containers answer {"predictions": [...]} or [[...]])."""
    values = decoded_output(output)
    if isinstance(values, dict):
        values = next((v for v in values.values() if isinstance(v, list)), None)
    if isinstance(values, list) and len(values) == 1 and isinstance(values[0], list):
        values = values[0]
    if not isinstance(values, list) or len(values) < 2 or not all(isinstance(v, NUMBER) for v in values):
        raise BadRecord(BAD_OUTPUT, str(values)[:60])
    return checked([float(v) for v in values])


def checked(probs: list[float]) -> list[float]:
    """Probabilities as the workflow may trust them: finite, each in [0, 1], summing to 1 ± SUM_TOLERANCE."""
    if len(probs) < 2:
        raise BadRecord(BAD_OUTPUT, str(probs)[:60])
    if not all(map(math.isfinite, probs)):
        raise BadRecord(NOT_FINITE, str(probs)[:60])
    if min(probs) < 0.0 or max(probs) > 1.0:  # all are finite: none outside [0, 1]
        raise BadRecord(OUT_OF_RANGE, str(probs)[:60])
    if abs(math.fsum(probs) - 1.0) > SUM_TOLERANCE:
        raise BadRecord(NOT_SUMMING, f"sum {math.fsum(probs):.6g}")
    return probs


def inference_time(rec: dict) -> float | None:
    """The record's eventMetadata.inferenceTime as epoch seconds (UTC when no zone is given); None if invalid."""
    meta = rec.get("eventMetadata")
    text = meta.get("inferenceTime") if isinstance(meta, dict) else None
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def probabilities(rec: object, labels: list[str] | None = None) -> list[float]:
    """The validated probabilities of a capture record, its image left undecoded (what `scones monitor
    --compare` reads); BadRecord with the reason, as for every record."""
    try:
        out = rec["captureData"]["endpointOutput"]  # type: ignore[index]
        if not isinstance(out, dict):
            raise TypeError
    except (KeyError, TypeError):
        raise BadRecord(NOT_A_RECORD) from None
    probs = _probabilities(out)
    if labels and len(probs) != len(labels):
        raise BadRecord(CLASS_COUNT, f"{len(probs)} outputs, baseline has {len(labels)} classes")
    return probs


def _parts(rec: object) -> tuple[dict, dict]:
    try:
        data = rec["captureData"]  # type: ignore[index]
        inp, out = data["endpointInput"], data["endpointOutput"]
        if not isinstance(inp, dict) or not isinstance(out, dict):
            raise TypeError
    except (KeyError, TypeError):
        raise BadRecord(NOT_A_RECORD) from None
    if str(inp.get("encoding", "")).upper() != "BASE64":
        raise BadRecord(INPUT_ENCODING, repr(inp.get("encoding")))
    return inp, out


def _body(inp: dict) -> bytes:
    try:  # base64.b64decode(validate=True) without its copy of the text into bytes
        return binascii.a2b_base64(inp.get("data") or "", strict_mode=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise BadRecord(BAD_IMAGE, f"bad base64: {exc}") from None


def images(rec: object, labels: list[str] | None) -> list[tuple[np.ndarray, int, int, list[float]]]:
    """(pixels as the model sees them, width, height, probabilities) of each image of a capture record: one for a
    single-image request, N for a batch (image i with output row i); BadRecord with the reason."""
    return _record(rec, labels)[0]


def _record(
    rec: object, labels: list[str] | None, canvas: Canvas | None = None
) -> tuple[list[tuple[np.ndarray | int, int, int, list[float]]], bool]:
    """`images(rec)`, and whether the record is a batch. With a canvas, a single plain PNG is decoded into it and
    its slot stands for its pixels."""
    inp, out = _parts(rec)
    content_type = inp.get("observedContentType") or "image/png"
    if content_type.startswith("image/") or not inference.is_batch(content_type):  # the first test is the cheap one
        probs = _probabilities(out)
        if labels and len(probs) != len(labels):
            raise BadRecord(CLASS_COUNT, f"{len(probs)} outputs, baseline has {len(labels)} classes")
        body = _body(inp)
        slot = canvas.put(body) if canvas is not None else None
        if slot is not None:
            return [(slot, *canvas.size, probs)], False
        return [(*image_pixels(body, content_type), probs)], False
    rows = _probability_rows(out, labels)
    found = batch_pixels(_body(inp), content_type)
    if len(found) != len(rows):
        raise BadRecord(BATCH_LENGTHS, f"{len(found)} images, {len(rows)} output rows")
    return [(*image, probs) for image, probs in zip(found, rows, strict=True)], True


def batch_pixels(body: bytes, content_type: str, size: tuple[int, int] = (32, 32)) -> list[tuple[np.ndarray, int, int]]:
    """(pixels, width, height) of each image of a batch body, decoded as the endpoint decodes it."""
    if inference.media_type(content_type) == inference.NPY:
        try:
            array = np.load(io.BytesIO(body), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise BadRecord(BAD_IMAGE, f"batch: not a .npy array ({exc})") from None
        if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
            raise BadRecord(BAD_IMAGE, f"batch: a {array.dtype} array of shape {array.shape}, not uint8 N×H×W×3")
        height, width = array.shape[1:3]
        if (width, height) != size:
            try:
                array = inference.decode_batch(body, content_type, size)
            except inference.InferenceError as exc:
                raise BadRecord(BAD_IMAGE, f"batch: {exc}") from None
        return [(np.asarray(a), width, height) for a in array]
    try:
        items = _fast_loads(body)
    except ValueError:
        raise BadRecord(BAD_IMAGE, "batch: the body is not a JSON list") from None
    if not isinstance(items, list):
        raise BadRecord(BAD_IMAGE, f"batch: the body is a JSON {type(items).__name__}, not a list")
    found = []
    for i, item in enumerate(items):
        try:
            data = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise BadRecord(BAD_IMAGE, f"batch: image {i} is not base64") from None
        try:
            found.append(image_pixels(data, "application/x-image", size))
        except BadRecord as exc:
            raise BadRecord(BAD_IMAGE, f"batch: image {i}: {exc}") from None
    return found


def parse_record(rec: object, labels: list[str] | None = None) -> list[dict]:
    """One capture record (a parsed JSON line) → its rows (one per image); raises BadRecord with the reason."""
    found = images(rec, labels)
    meta = rec.get("eventMetadata") if isinstance(rec, dict) else None
    when = (meta or {}).get("inferenceTime")
    out = []
    for pixels, width, height, probs in found:
        mean, std = grey_levels(pixels[None])
        out.append(row(probs, labels, (float(mean[0]), float(std[0]), width, height), when))
    return out


def row(probs, labels: list[str] | None, features: tuple[float, float, int, int], when: str | None) -> dict:
    """One table row: the top class, its probability and its margin over the second, and the image's
    brightness, contrast and size (`image_features`)."""
    best, confidence, margin = top_class(probs)
    brightness, contrast, width, height = features
    return {
        "time": when,
        "predicted": labels[best] if labels else f"class_{best}",
        "confidence": confidence,
        "margin": margin,
        "brightness": brightness,
        "contrast": contrast,
        "width": width,
        "height": height,
    }


def top_class(probs: list[float]) -> tuple[int, float, float]:
    """The top class's index, its probability and its margin over the second: numpy's argsort order (its choice among
    tied top classes included), computed in Python for a list whose top is unique (a few µs a record less)."""
    confidence = max(probs) if isinstance(probs, list) else None
    if confidence is not None and probs.count(confidence) == 1:
        best = probs.index(confidence)
        return best, float(confidence), float(confidence - max(probs[:best] + probs[best + 1 :]))
    order = np.argsort(probs)[::-1]
    best = int(order[0])
    return best, float(probs[best]), float(probs[best] - probs[int(order[1])])


def _key(name: str, line: int, image: int = 0) -> int:
    """The sample's ordering: a hash of file, line and (in a batch) image, the same in every process and run."""
    return zlib.crc32(f"{line}:{name}".encode() if not image else f"{line}:{image}:{name}".encode())


def read_text(text: str, name: str, table: CaptureTable, since: datetime | None = None) -> None:
    """Every line of one capture file into `table`: its valid records are measured as one batch."""
    table.files += 1
    labels, cutoff = table.labels, since.timestamp() if since is not None else None
    kept: list[tuple[tuple[int, int], float | None, str | None, list[float], int, int]] = []
    pixels: list[np.ndarray | int] = []  # of each kept image: its pixels, or its slot in the canvas
    canvas = Canvas() if FAST else None
    number = 0
    for number, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        table.lines += 1
        try:
            rec = _fast_loads(line)
        except ValueError:
            try:
                rec = json.loads(line)  # orjson refuses NaN where json takes it
            except ValueError:
                table.bad[MALFORMED] += 1
                continue
        try:
            found, batch = _record(rec, labels, canvas)
        except BadRecord as exc:
            table.bad[exc.reason] += 1
            continue
        table.parsed += 1
        if batch:
            table.batches += 1
            table.batch_images += len(found)
        when = inference_time(rec)
        if when is None:
            table.untimed += 1
            if cutoff is not None:
                table.excluded[UNTIMED] += 1
                continue
        elif cutoff is not None and when < cutoff:
            table.excluded[BEFORE_SINCE] += 1
            continue
        stamp = rec["eventMetadata"]["inferenceTime"] if when is not None else None
        for i, (image, width, height, probs) in enumerate(found):
            kept.append(((number, i), when, stamp, probs, width, height))
            pixels.append(image)
    if not table.parsed and table.lines:
        table.add_bad_file(name)
    if not kept:
        return
    brightness, contrast = grey_levels(_gather(pixels, canvas))
    top = np.empty(len(kept))
    margin = np.empty(len(kept))
    classes: dict[str, int] = {}
    first, last, ceiling = table.first, table.last, table.sample_ceiling()
    for i, (line, when, stamp, probs, width, height) in enumerate(kept):
        best, top[i], margin[i] = top_class(probs)
        predicted = labels[best] if labels else f"class_{best}"
        classes[predicted] = classes.get(predicted, 0) + 1
        if when is not None:
            first, last = min(first, when), max(last, when)
        key = _key(name, *line)
        if key > ceiling:  # the merged sample will not take it: no row
            continue
        r = {
            "time": stamp,
            "predicted": predicted,
            "confidence": float(top[i]),
            "margin": float(margin[i]),
            "brightness": float(brightness[i]),
            "contrast": float(contrast[i]),
            "width": width,
            "height": height,
            "file": name,
        }
        table.keep(key, name, line, r)
    table.classes.update(classes)
    table.first, table.last = first, last
    features = {
        "confidence": top,
        "margin": margin,
        "brightness": brightness,
        "contrast": contrast,
        "width": np.array([k[4] for k in kept], float),
        "height": np.array([k[5] for k in kept], float),
    }
    for feature, values in features.items():
        table.moments[feature].add(values)
    for feature in BINNED:
        table.hist[feature] = table.hist[feature] + histogram(features[feature])
    table.below += int((top < table.threshold).sum())


def _gather(pixels: list[np.ndarray | int], canvas: Canvas | None) -> np.ndarray:
    """The kept images' pixels as one N×H×W×3 array, in order: the canvas itself when it holds exactly them."""
    decoded = canvas.pixels() if canvas is not None and canvas.count else None
    if decoded is not None and len(decoded) == len(pixels) and all(type(p) is int for p in pixels):
        return decoded  # slots are given in order and each kept once: 0, 1, …, N-1
    return np.stack([decoded[p] if type(p) is int else p for p in pixels])


def read_bytes(body: bytes, name: str, table: CaptureTable, since: datetime | None = None) -> None:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        table.files += 1
        table.lines += 1
        table.bad[NOT_TEXT] += 1  # one count per file: its lines cannot even be told apart
        table.add_bad_file(name)
        return
    read_text(text, name, table, since)


# --- where capture files live ------------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """s3://bucket/prefix or a local folder (e.g. an `aws s3 sync` of AWS's capture)."""

    bucket: str | None
    prefix: str

    @classmethod
    def parse(cls, uri: str) -> Location:
        if uri.startswith("s3://"):
            bucket, _, prefix = uri[5:].partition("/")
            return cls(bucket, prefix.strip("/"))
        return cls(None, str(Path(uri)))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.bucket else self.prefix


class CaptureNotFoundError(LookupError):
    """The prefix does not exist or holds no file."""


KEY_HOUR = re.compile(r"(?:^|/)(\d{4})/(\d{2})/(\d{2})/(\d{2})/[^/]+$")


def key_hour(name: str) -> datetime | None:
    """The hour a capture file's key names (…/yyyy/mm/dd/hh/file, UTC); None for a key without one."""
    found = KEY_HOUR.search(name.replace("\\", "/"))
    if not found:
        return None
    try:
        return datetime(*(int(g) for g in found.groups()), tzinfo=UTC)
    except ValueError:
        return None


def newer(names: Iterable[str], since: datetime | None) -> tuple[list[str], int]:
    """The files that may hold records at or after `since`, and how many were passed over by their key alone.
    A file's key names the hour of its first record (the endpoint and SageMaker both flush within minutes), so a
    file whose hour ended before `since` holds nothing to analyse. Keys without an hour are always read."""
    names = list(names)
    if since is None:
        return names, 0
    kept = [n for n in names if (hour := key_hour(n)) is None or hour + timedelta(hours=1) > since]
    return kept, len(names) - len(kept)


def list_files(where: Location, s3=None) -> list[str]:
    if where.bucket is None:
        root = Path(where.prefix)
        if not root.exists():
            raise CaptureNotFoundError(f"{root}: no such folder")
        return sorted(str(p) for p in ([root] if root.is_file() else root.rglob("*")) if p.is_file())
    keys = []
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=where.bucket, Prefix=where.prefix)
        for page in pages:
            keys += [o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/")]
    except s3.exceptions.NoSuchBucket:
        raise CaptureNotFoundError(f"bucket {where.bucket} does not exist") from None
    return sorted(keys)


def fetch(where: Location, name: str, s3=None) -> bytes:
    if where.bucket is None:
        return Path(name).read_bytes()
    return (s3 or _worker_s3()).get_object(Bucket=where.bucket, Key=name)["Body"].read()


def iter_files(where: Location, names: Iterable[str], s3=None) -> Iterator[tuple[str, bytes]]:
    for name in names:
        yield name, fetch(where, name, s3)


_S3: dict[int, object] = {}


def _worker_s3():
    """One S3 client per process (a client made before a fork is not shared with the child)."""
    pid = os.getpid()
    if pid not in _S3:
        _S3[pid] = aws.client("s3")
    return _S3[pid]


def _read_file(
    where: Location, name: str, labels: list[str], threshold: float, since: datetime | None, ceiling: int = 0xFFFFFFFF
):
    """Download and read one file into a table of its own (runs in a worker process). `ceiling`: the merged
    sample's when the file was handed out; rows above it would be thrown away there, so they are not made."""
    table = CaptureTable(labels=labels, threshold=threshold, ceiling=ceiling)
    read_bytes(fetch(where, name), name, table, since)
    return table


class _Helper(threading.Thread):
    """`read`'s meanwhile: a thread whose exception is raised again where it is joined."""

    def __init__(self, work: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self.work, self.error = work, None
        self.start()

    def run(self) -> None:
        try:
            self.work()
        except BaseException as exc:  # handed to the joining thread
            self.error = exc

    def finish(self) -> None:
        self.join()
        if self.error is not None:
            raise self.error


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def read(
    where: Location,
    labels: list[str] | None = None,
    s3=None,
    progress=None,
    workers: int | None = None,
    since: datetime | None = None,
    threshold: float = 0.0,
    meanwhile: Callable[[], object] | None = None,
) -> CaptureTable:
    """Every record of every file under `where` (with `since`: of the files whose key hour has not ended before
    it), read by `workers` processes (default: one per core; one for a single file or a single core). Each
    worker downloads and reads whole files; this process only adds their tables up, so memory holds a few files
    at a time whatever the count. Raises CaptureNotFoundError when there is no file at all.

    `meanwhile`, if given, runs in a thread of this process while the workers read (work that would otherwise wait
    for them, such as importing what the report needs), and has ended when this returns. On Linux the workers are
    forked, so they start with every module imported, and before that thread starts."""
    if where.bucket is not None and s3 is None:
        s3 = aws.client("s3")
    names = list_files(where, s3)
    if not names:
        raise CaptureNotFoundError(f"{where}: no capture file under this prefix")
    names, skipped = newer(names, since)
    labels = list(labels or [])
    table = CaptureTable(labels=labels, threshold=threshold, files_skipped=skipped)
    workers = workers or cores()
    workers = min(workers, len(names))
    if progress is not None:
        progress.start(len(names))
    helper = None
    if workers <= 1:
        for name in names:
            read_bytes(fetch(where, name, s3), name, table, since)
            if progress is not None:
                progress.advance()
    else:
        context = multiprocessing.get_context("fork") if sys.platform == "linux" else None
        try:
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                pending = []
                for name in names:
                    ceiling = table.sample_ceiling()
                    pending.append(pool.submit(_read_file, where, name, labels, threshold, since, ceiling))
                    if meanwhile is not None:  # the workers exist from the first submit: a thread now forks nothing
                        helper, meanwhile = _Helper(meanwhile), None
                    while len(pending) > 2 * workers:  # a bounded number of files in flight
                        table.merge(pending.pop(0).result())
                        if progress is not None:
                            progress.advance()
                for future in pending:
                    table.merge(future.result())
                    if progress is not None:
                        progress.advance()
        finally:  # a failed read too leaves no thread behind (the read's error is the one raised)
            if helper is not None:
                helper.join()
    if helper is not None:
        helper.finish()
    elif meanwhile is not None:
        meanwhile()
    if progress is not None:
        progress.finish(f"({table.lines} records)")
    return table
