"""Read every record of every data-capture file under a prefix into one table, counting what cannot be read.

The record format is the endpoint's (services/endpoint/capture.py), which is SageMaker's: a JSON line with
`captureData.endpointInput` (the image, BASE64) and `captureData.endpointOutput` (the probabilities, JSON).
A file holds many lines and every line is read. A line that cannot be used is counted under a reason
(never a crash, never dropped silently): the caller prints the counts.

Columns of the table: time, file, predicted, confidence, margin, brightness, contrast, width, height.
Brightness and contrast are the mean and standard deviation of the image's grey levels on 0..1, after the
serving decoder's own conversion (RGBA and palette images composited on white, as the endpoint does).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scones.core import aws
from services.endpoint import inference
from services.endpoint.capture import parse_lines

COLUMNS = ("time", "file", "predicted", "confidence", "margin", "brightness", "contrast", "width", "height")
NUMERIC = ("confidence", "margin", "brightness", "contrast", "width", "height")

# Reasons a record is not used, as printed. A `BadRecord` names one of them.
MALFORMED = "malformed or truncated JSON line"
NOT_A_RECORD = "JSON but not a capture record (no captureData.endpointInput/endpointOutput)"
INPUT_ENCODING = "unknown input encoding"
OUTPUT_ENCODING = "unknown output encoding"
BAD_IMAGE = "input is not a readable image"
BAD_OUTPUT = "output is not a list of probabilities"
CLASS_COUNT = "output has a different number of classes than the baseline"
NOT_TEXT = "file is not UTF-8 text"


class BadRecord(ValueError):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class CaptureTable:
    """What a read found: the table of usable records and the counts of the rest."""

    rows: list[dict] = field(default_factory=list)
    files: int = 0
    lines: int = 0
    bad: Counter = field(default_factory=Counter)  # reason -> records
    bad_files: list[str] = field(default_factory=list)  # files with no usable record at all
    labels: list[str] = field(default_factory=list)

    @property
    def parsed(self) -> int:
        return len(self.rows)

    @property
    def unparseable(self) -> int:
        return sum(self.bad.values())

    def frame(self):
        import pandas as pd

        frame = pd.DataFrame(self.rows, columns=list(COLUMNS))
        frame["time"] = pd.to_datetime(frame["time"], utc=True, errors="coerce")
        return frame.sort_values("time", kind="stable").reset_index(drop=True)

    def summary(self) -> str:
        text = (
            f"read {self.files} file(s), {self.lines} record(s): {self.parsed} parsed, {self.unparseable} not parseable"
        )
        for reason, n in self.bad.most_common():
            text += f"\n  {n:>7} {reason}"
        return text


def image_size(body: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG header (no decoding); None for other formats."""
    if body[:8] == b"\x89PNG\r\n\x1a\n" and body[12:16] == b"IHDR":
        return int.from_bytes(body[16:20], "big"), int.from_bytes(body[20:24], "big")
    return None


def image_features(body: bytes, content_type: str) -> tuple[float, float, int, int]:
    """(brightness, contrast, width, height) of an image body. Brightness and contrast are measured on the
    image as the model sees it: decoded, converted and resized by the serving decoder itself."""
    from PIL import Image

    try:
        size = image_size(body)
        if size is None:
            with Image.open(io.BytesIO(body)) as probe:  # lazy: reads the header only
                size = probe.size
        pixels = inference.decode(body, content_type)
    except inference.InferenceError as exc:
        raise BadRecord(BAD_IMAGE, str(exc)) from None
    except Exception as exc:  # PIL raises many types on a broken header
        raise BadRecord(BAD_IMAGE, f"{type(exc).__name__}: {exc}") from None
    grey = pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0
    return float(grey.mean()), float(grey.std()), size[0], size[1]


def _probabilities(output: dict) -> list[float]:
    encoding = str(output.get("encoding", "")).upper()
    data = output.get("data")
    if not isinstance(data, str):
        raise BadRecord(BAD_OUTPUT, "no data")
    try:
        if encoding == "BASE64":
            data = base64.b64decode(data, validate=True).decode()
        elif encoding == "CSV":
            return [float(x) for x in data.strip().split(",")]
        elif encoding != "JSON":
            raise BadRecord(OUTPUT_ENCODING, repr(output.get("encoding")))
        values = json.loads(data)
    except BadRecord:
        raise
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadRecord(BAD_OUTPUT, str(exc)) from None
    if isinstance(values, dict):  # some containers wrap the list: {"predictions": [...]}
        values = next((v for v in values.values() if isinstance(v, list)), None)
    if isinstance(values, list) and len(values) == 1 and isinstance(values[0], list):
        values = values[0]
    if not isinstance(values, list) or len(values) < 2 or not all(isinstance(v, int | float) for v in values):
        raise BadRecord(BAD_OUTPUT, str(values)[:60])
    return [float(v) for v in values]


def parse_record(rec: object, labels: list[str] | None = None) -> dict:
    """One capture record (a parsed JSON line) → one row; raises BadRecord with the reason."""
    try:
        data = rec["captureData"]  # type: ignore[index]
        inp, out = data["endpointInput"], data["endpointOutput"]
        if not isinstance(inp, dict) or not isinstance(out, dict):
            raise TypeError
    except (KeyError, TypeError):
        raise BadRecord(NOT_A_RECORD) from None
    if str(inp.get("encoding", "")).upper() != "BASE64":
        raise BadRecord(INPUT_ENCODING, repr(inp.get("encoding")))
    try:
        body = base64.b64decode(inp.get("data") or "", validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise BadRecord(BAD_IMAGE, f"bad base64: {exc}") from None
    probs = _probabilities(out)
    if labels and len(probs) != len(labels):
        raise BadRecord(CLASS_COUNT, f"{len(probs)} outputs, baseline has {len(labels)} classes")
    features = image_features(body, inp.get("observedContentType") or "image/png")
    return row(probs, labels, features, (rec.get("eventMetadata") or {}).get("inferenceTime"))  # type: ignore[union-attr]


def row(probs, labels: list[str] | None, features: tuple[float, float, int, int], when: str | None) -> dict:
    """One table row: the top class, its probability and its margin over the second, and the image's
    brightness, contrast and size (`image_features`)."""
    order = np.argsort(probs)[::-1]
    best = int(order[0])
    brightness, contrast, width, height = features
    return {
        "time": when,
        "predicted": labels[best] if labels else f"class_{best}",
        "confidence": float(probs[best]),
        "margin": float(probs[best] - probs[int(order[1])]),
        "brightness": brightness,
        "contrast": contrast,
        "width": width,
        "height": height,
    }


def read_text(text: str, name: str, table: CaptureTable) -> None:
    """Every line of one capture file into `table`."""
    table.files += 1
    before = table.parsed
    for line in text.splitlines():
        if not line.strip():
            continue
        table.lines += 1
        try:
            (rec,) = parse_lines(line)  # the endpoint's own reader, one line at a time
        except ValueError:
            table.bad[MALFORMED] += 1
            continue
        try:
            row = parse_record(rec, table.labels)
        except BadRecord as exc:
            table.bad[exc.reason] += 1
            continue
        row["file"] = name
        table.rows.append(row)
    if table.parsed == before:
        table.bad_files.append(name)


def read_bytes(body: bytes, name: str, table: CaptureTable) -> None:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        table.files += 1
        table.lines += 1
        table.bad[NOT_TEXT] += 1  # one count per file: its lines cannot even be told apart
        table.bad_files.append(name)
        return
    read_text(text, name, table)


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


def iter_files(where: Location, names: Iterable[str], s3=None) -> Iterator[tuple[str, bytes]]:
    for name in names:
        if where.bucket is None:
            yield name, Path(name).read_bytes()
        else:
            yield name, s3.get_object(Bucket=where.bucket, Key=name)["Body"].read()


def _parse_file(body: bytes, name: str, labels: list[str]) -> CaptureTable:
    """One file into a table of its own (runs in a worker process)."""
    table = CaptureTable(labels=labels)
    read_bytes(body, name, table)
    return table


def _merge(into: CaptureTable, part: CaptureTable) -> None:
    into.rows += part.rows
    into.files += part.files
    into.lines += part.lines
    into.bad.update(part.bad)
    into.bad_files += part.bad_files


def read(where: Location, labels: list[str] | None = None, s3=None, progress=None, workers: int | None = None):
    """Every record of every file under `where`, parsed by `workers` processes (default: one per core, at
    most 4; one for a handful of files). Raises CaptureNotFoundError when there is no file at all."""
    import os
    from concurrent.futures import ProcessPoolExecutor

    if where.bucket is not None and s3 is None:
        s3 = aws.client("s3")
    names = list_files(where, s3)
    if not names:
        raise CaptureNotFoundError(f"{where}: no capture file under this prefix")
    labels = list(labels or [])
    table = CaptureTable(labels=labels)
    workers = workers or (min(4, os.cpu_count() or 1) if len(names) >= 8 else 1)
    if progress is not None:
        progress.start(len(names))
    if workers == 1:
        for name, body in iter_files(where, names, s3):
            read_bytes(body, name, table)
            if progress is not None:
                progress.advance()
    else:
        with ProcessPoolExecutor(workers) as pool:
            pending = []
            for name, body in iter_files(where, names, s3):  # this process downloads; the workers parse
                pending.append(pool.submit(_parse_file, body, name, labels))
                while len(pending) > 2 * workers:  # a bounded number of file bodies in memory
                    _merge(table, pending.pop(0).result())
                    if progress is not None:
                        progress.advance()
            for future in pending:
                _merge(table, future.result())
                if progress is not None:
                    progress.advance()
    if progress is not None:
        progress.finish(f"({table.lines} records)")
    return table
