"""Data capture in SageMaker's format, written to S3.

Each captured invocation is one JSON line:
  {"captureData": {"endpointInput": {"observedContentType", "mode": "INPUT", "data": <base64>, "encoding": "BASE64"},
                   "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT", "data": <json text>,
                                      "encoding": "JSON"}},
   "eventMetadata": {"eventId": <uuid>, "inferenceTime": "2024-11-25T23:21:43Z"}, "eventVersion": "0"}
A request only appends (time, body, content type, output) to a buffer; records are built, base64-encoded
and serialised by the flush, off the request path. Lines are flushed (by count, by age, and on shutdown) to
  s3://{bucket}/{prefix}/{endpoint}/{variant}/YYYY/MM/DD/HH/{mm-ss-fff}-{uuid}.jsonl
one file per hour of the first record it holds, as SageMaker lays them out. A failed upload keeps its
records for the next flush; at shutdown, what still cannot be uploaded is written to a local file.
"""

from __future__ import annotations

import base64
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from scones.core import settings

VARIANT = "AllTraffic"  # the production variant a local endpoint serves: in every capture key, and answered in a header

try:  # orjson: ~5× faster serialisation of capture lines; the standard library's json writes the same JSON
    import orjson

    def _line(rec: dict) -> str:
        return orjson.dumps(rec).decode()
except ImportError:  # pragma: no cover - orjson is in the serve extra

    def _line(rec: dict) -> str:
        return json.dumps(rec, separators=(",", ":"))


def event_id(random16: bytes) -> str:
    """A version-4 UUID string from 16 random bytes (uuid.uuid4() without its per-call overhead)."""
    b = bytearray(random16)
    b[6], b[8] = (b[6] & 0x0F) | 0x40, (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def record(
    body: bytes,
    content_type: str,
    output: bytes,
    when: datetime | None = None,
    event: str | None = None,
    inference_time: str | None = None,
) -> dict:
    if inference_time is None:
        inference_time = (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "captureData": {
            "endpointInput": {
                "observedContentType": content_type,
                "mode": "INPUT",
                "data": base64.b64encode(body).decode(),
                "encoding": "BASE64",
            },
            "endpointOutput": {
                "observedContentType": "application/json",
                "mode": "OUTPUT",
                "data": output.decode(),
                "encoding": "JSON",
            },
        },
        "eventMetadata": {
            "eventId": event or str(uuid.uuid4()),
            "inferenceTime": inference_time,
        },
        "eventVersion": "0",
    }


def object_key(prefix: str, endpoint: str, variant: str, when: datetime) -> str:
    stamp = when.strftime("%Y/%m/%d/%H")
    name = f"{when.strftime('%M-%S')}-{when.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
    return "/".join(p for p in (prefix.strip("/"), endpoint, variant, stamp, name) if p)


def parse_lines(text: str) -> list[dict]:
    """Every record of a capture file (a file holds many lines; read them all)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class CaptureWriter:
    def __init__(
        self,
        put: Callable[[str, bytes], None],
        endpoint: str,
        prefix: str | None = None,
        variant: str = VARIANT,
        percent: float | None = None,
        max_records: int = 500,
        max_age_s: float = 5.0,
        fallback_dir: Path | None = None,
    ) -> None:
        """`prefix` and `percent` left None are the settings' ($SCONES_CAPTURE_PREFIX, $SCONES_CAPTURE_PERCENT)."""
        prefix = settings.capture_prefix() if prefix is None else prefix
        percent = settings.capture_percent() if percent is None else percent
        if not 0 <= percent <= 100:
            raise ValueError(f"sampling percentage must be in 0..100, got {percent}")
        self.put, self.endpoint, self.prefix, self.variant = put, endpoint, prefix, variant
        self.percent, self.max_records, self.max_age_s = percent, max_records, max_age_s
        self.fallback_dir = fallback_dir
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._buffer: list[tuple[float, bytes, str, bytes]] = []  # (time.time(), body, content type, output)
        self._oldest = 0.0
        self._flush_asked = False
        self.captured = 0
        self.written = 0
        self.files = 0
        self.failures = 0

    def sampled(self) -> bool:
        return self.percent >= 100 or random.random() * 100 < self.percent

    def add(self, body: bytes, content_type: str, output: bytes) -> bool:
        """Buffer one invocation (no encoding here: it is on the request path); returns whether a flush is
        due (the caller schedules it off the event loop)."""
        with self._lock:
            if not self._buffer:
                self._oldest = time.monotonic()
            self._buffer.append((time.time(), body, content_type, output))
            self.captured += 1
            if len(self._buffer) >= self.max_records and not self._flush_asked:
                self._flush_asked = True  # once: every request after it would queue another flush thread
                return True
            return False

    def due(self) -> bool:
        with self._lock:
            return bool(self._buffer) and time.monotonic() - self._oldest >= self.max_age_s

    def pending(self) -> int:
        with self._lock:
            return len(self._buffer)

    def flush(self, final: bool = False) -> int:
        """Upload what is buffered, one file per hour; returns the number of records written."""
        with self._flush_lock:
            with self._lock:
                batch, self._buffer, self._flush_asked = self._buffer, [], False
            if not batch:
                return 0
            groups: dict[str, list[tuple[float, str]]] = {}  # hour -> (time, line)
            raws: dict[str, list] = {}
            seconds: dict[int, tuple[str, str]] = {}  # one strftime per second, not per record
            ids = os.urandom(16 * len(batch))
            for i, raw in enumerate(batch):
                second = int(raw[0])
                if second not in seconds:
                    at = datetime.fromtimestamp(second, UTC)
                    seconds[second] = (at.strftime("%Y%m%d%H"), at.strftime("%Y-%m-%dT%H:%M:%SZ"))
                hour, stamp = seconds[second]
                rec = record(raw[1], raw[2], raw[3], None, event_id(ids[16 * i : 16 * i + 16]), stamp)
                if hour not in groups:
                    groups[hour], raws[hour] = [], []
                groups[hour].append((raw[0], _line(rec)))
                raws[hour].append(raw)
            written, failed, failed_lines = 0, [], []
            for hour, items in groups.items():
                first = datetime.fromtimestamp(items[0][0], UTC)  # the file is named for its first record
                key = object_key(self.prefix, self.endpoint, self.variant, first)
                body = ("\n".join(line for _, line in items) + "\n").encode()
                try:
                    self.put(key, body)
                    written += len(items)
                    self.files += 1
                except Exception as exc:  # keep the records: nothing captured is dropped
                    self.failures += 1
                    failed.extend(raws[hour])
                    failed_lines.extend(line for _, line in items)
                    print(f"capture: upload of {len(items)} records to {key} failed: {exc}", flush=True)
            if failed:
                if final and self.fallback_dir is not None:
                    self.fallback_dir.mkdir(parents=True, exist_ok=True)
                    path = self.fallback_dir / f"capture-unsent-{uuid.uuid4()}.jsonl"
                    path.write_text("\n".join(failed_lines) + "\n")
                    print(f"capture: {len(failed)} records could not be uploaded; kept in {path}", flush=True)
                else:
                    with self._lock:
                        self._buffer[:0] = failed
                        self._oldest = time.monotonic()
            self.written += written
            return written
