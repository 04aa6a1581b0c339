"""Data capture in SageMaker's format, written to S3.

Each captured invocation is one JSON line:
  {"captureData": {"endpointInput": {"observedContentType", "mode": "INPUT", "data": <base64>, "encoding": "BASE64"},
                   "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT", "data": <json text>,
                                      "encoding": "JSON"}},
   "eventMetadata": {"eventId": <uuid>, "inferenceTime": "2024-11-25T23:21:43Z"}, "eventVersion": "0"}
with one key AWS does not write, "modelLatencyMs" in eventMetadata (the model's share of the answer: batching
wait and compute), which `scones monitor --compare` reads for each variant's latency; readers ignore it.
A request the client gave an InferenceId, or one mirrored to a shadow, also carries eventMetadata.inferenceId
(AWS's key for the client's InferenceId): a production record and its shadow's share it, which is what
`scones monitor --compare` pairs them on.
A request only appends (time, body, content type, output) to a buffer; records are built, base64-encoded
and serialised by the flush, off the request path, once. Lines are flushed (by count, by age, and on shutdown) to
  s3://{bucket}/{prefix}/{endpoint}/{variant}/YYYY/MM/DD/HH/{mm-ss-fff}-{uuid}.jsonl
one file per hour of the first record it holds, as SageMaker lays them out. A failed upload keeps its
encoded lines for the next flush; at shutdown, what still cannot be uploaded is written to a local file.

Memory is bounded: what the writer holds (every record not yet written, counted as its encoded line) stays
under `max_bytes` ($SCONES_CAPTURE_MAX_MB). Past it, the app applies `when_full`: block (the request waits
for room, then answers 503) or drop (answered, not captured, counted in `dropped`). Every record answered but
not captured is counted by reason (`lost()`), never lost silently.
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

    def _line(rec: dict) -> bytes:
        return orjson.dumps(rec)
except ImportError:  # pragma: no cover - orjson is in the serve extra

    def _line(rec: dict) -> bytes:
        return json.dumps(rec, separators=(",", ":")).encode()


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
    latency_ms: float | None = None,
    inference_id: str | None = None,
) -> dict:
    if inference_time is None:
        inference_time = (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    found = {
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
    if inference_id is not None:
        found["eventMetadata"]["inferenceId"] = inference_id
    if latency_ms is not None:
        found["eventMetadata"]["modelLatencyMs"] = round(latency_ms, 3)
    return found


def object_key(prefix: str, endpoint: str, variant: str, when: datetime) -> str:
    stamp = when.strftime("%Y/%m/%d/%H")
    name = f"{when.strftime('%M-%S')}-{when.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
    return "/".join(p for p in (prefix.strip("/"), endpoint, variant, stamp, name) if p)


def parse_lines(text: str) -> list[dict]:
    """Every record of a capture file (a file holds many lines; read them all)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


RECORD_OVERHEAD = 400  # bytes of a line besides its base64 input and its output (keys, ids, times)
MAX_FILE_BYTES = 32 * 1024 * 1024  # an upload joins at most this much, so a large retry is not copied whole


def held_size(body: bytes, output: bytes) -> int:
    """What one record counts against the byte bound: its encoded line's size, known before encoding."""
    return (len(body) + 2) // 3 * 4 + len(output) + RECORD_OVERHEAD


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
        max_bytes: int | None = None,
        when_full: str | None = None,
    ) -> None:
        """`prefix`, `percent`, `max_bytes` and `when_full` left None are the settings' ($SCONES_CAPTURE_PREFIX,
        $SCONES_CAPTURE_PERCENT, $SCONES_CAPTURE_MAX_MB, $SCONES_CAPTURE_WHEN_FULL)."""
        prefix = settings.capture_prefix() if prefix is None else prefix
        percent = settings.capture_percent() if percent is None else percent
        if not 0 <= percent <= 100:
            raise ValueError(f"sampling percentage must be in 0..100, got {percent}")
        self.put, self.endpoint, self.prefix, self.variant = put, endpoint, prefix, variant
        self.percent, self.max_records, self.max_age_s = percent, max_records, max_age_s
        self.fallback_dir = fallback_dir
        self.max_bytes = settings.capture_max_bytes() if max_bytes is None else max_bytes
        self.when_full = settings.capture_when_full() if when_full is None else when_full
        if self.when_full not in settings.CAPTURE_POLICIES:
            raise ValueError(f"when_full must be one of {', '.join(settings.CAPTURE_POLICIES)}, got {self.when_full}")
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._buffer: list[tuple] = []  # (time.time(), body, content type, output, latency ms, inference id)
        self._encoded: list[tuple[str, float, bytes]] = []  # (hour, time, line): built once, kept across retries
        self._oldest = 0.0
        self._flush_asked = False
        self.held = 0  # bytes counted against max_bytes: every record not yet written, as its encoded line
        self.captured = 0  # records taken into the buffer
        self.written = 0  # records uploaded
        self.files = 0
        self.failures = 0  # failed uploads (their records are kept and retried)
        self.dropped = 0  # records not taken: the buffer was full under the drop policy (lost, and counted)
        self.spooled = 0  # records that could not be uploaded by shutdown, written to fallback_dir instead
        self.unsent = 0  # records that could be neither uploaded nor written locally at shutdown (lost)

    def sampled(self) -> bool:
        return self.percent >= 100 or random.random() * 100 < self.percent

    def room(self, body: bytes, output: bytes) -> bool:
        """Whether this record fits under the byte bound now (an empty buffer takes any one record)."""
        with self._lock:
            return self.held == 0 or self.held + held_size(body, output) <= self.max_bytes

    def add(
        self,
        body: bytes,
        content_type: str,
        output: bytes,
        latency_ms: float | None = None,
        inference_id: str | None = None,
    ) -> bool:
        """Buffer one invocation (no encoding here: it is on the request path); returns whether a flush is
        due (the caller schedules it off the event loop). A record past the byte bound is dropped and counted
        (`dropped`): under the block policy the app waits for `room` before it answers, so it seldom happens."""
        size = held_size(body, output)
        with self._lock:
            if self.held and self.held + size > self.max_bytes:
                self.dropped += 1
                ask, self._flush_asked = not self._flush_asked, True
                return ask
            if not self._buffer and not self._encoded:
                self._oldest = time.monotonic()
            self._buffer.append((time.time(), body, content_type, output, latency_ms, inference_id))
            self.held += size
            self.captured += 1
            if len(self._buffer) >= self.max_records and not self._flush_asked:
                self._flush_asked = True  # once: every request after it would queue another flush thread
                return True
            return False

    def due(self) -> bool:
        with self._lock:
            return bool(self._buffer or self._encoded) and time.monotonic() - self._oldest >= self.max_age_s

    def flushing(self) -> bool:
        return self._flush_lock.locked()

    def pending(self) -> int:
        with self._lock:
            return len(self._buffer) + len(self._encoded)

    def lost(self) -> dict[str, int]:
        """Records answered but not captured, by reason (what /_scones/stats and `scones endpoint status` show)."""
        return {"dropped_full": self.dropped, "unsent": self.unsent}

    def _encode(self, batch: list) -> list[tuple[str, float, bytes]]:
        """Raw records → (hour, time, line), releasing each raw body as soon as its line exists."""
        out, estimated, actual = [], 0, 0
        seconds: dict[int, tuple[str, str]] = {}  # one strftime per second, not per record
        ids = os.urandom(16 * len(batch))
        for i, raw in enumerate(batch):
            second = int(raw[0])
            if second not in seconds:
                at = datetime.fromtimestamp(second, UTC)
                seconds[second] = (at.strftime("%Y%m%d%H"), at.strftime("%Y-%m-%dT%H:%M:%SZ"))
            hour, stamp = seconds[second]
            rec = record(raw[1], raw[2], raw[3], None, event_id(ids[16 * i : 16 * i + 16]), stamp, raw[4], raw[5])
            line = _line(rec)
            out.append((hour, raw[0], line))
            estimated, actual = estimated + held_size(raw[1], raw[3]), actual + len(line)
            batch[i] = rec = None  # the raw body goes now: memory holds a record once, not twice
        with self._lock:
            self.held += actual - estimated  # from now on a record counts as its line
        return out

    def flush(self, final: bool = False) -> int:
        """Upload what is buffered, one file per hour (split past MAX_FILE_BYTES); returns the records written.

        Records are encoded once; a failed upload keeps their encoded lines for the next flush."""
        with self._flush_lock:
            with self._lock:
                batch, self._buffer, self._flush_asked = self._buffer, [], False
                retry, self._encoded = self._encoded, []
            if not batch and not retry:
                return 0
            lines = retry + self._encode(batch)
            del batch, retry
            groups: dict[str, list[tuple[float, bytes]]] = {}  # hour -> (time, line)
            for hour, at, line in lines:
                groups.setdefault(hour, []).append((at, line))
            del lines
            written, failed = 0, []
            for hour, items in groups.items():
                for chunk in _chunks(items):
                    first = datetime.fromtimestamp(chunk[0][0], UTC)  # the file is named for its first record
                    key = object_key(self.prefix, self.endpoint, self.variant, first)
                    body = b"\n".join(line for _, line in chunk) + b"\n"
                    try:
                        self.put(key, body)
                        written += len(chunk)
                        self.files += 1
                        with self._lock:
                            self.held -= sum(len(line) for _, line in chunk)
                    except Exception as exc:  # keep the records: nothing captured is dropped
                        self.failures += 1
                        failed.extend((hour, at, line) for at, line in chunk)
                        print(f"capture: upload of {len(chunk)} records to {key} failed: {exc}", flush=True)
                    del body
            self.written += written
            if failed and final:
                self._keep_locally(failed)
            elif failed:
                with self._lock:
                    self._encoded[:0] = failed
                    self._oldest = time.monotonic()
            return written

    def _keep_locally(self, failed: list[tuple[str, float, bytes]]) -> None:
        """At shutdown: what S3 would not take goes to a local file (spooled), else it is lost (unsent)."""
        try:
            if self.fallback_dir is None:
                raise OSError("no fallback folder")
            self.fallback_dir.mkdir(parents=True, exist_ok=True)
            path = self.fallback_dir / f"capture-unsent-{uuid.uuid4()}.jsonl"
            with open(path, "wb") as f:
                for _, _, line in failed:
                    f.write(line + b"\n")
            self.spooled += len(failed)
            print(f"capture: {len(failed)} records could not be uploaded; kept in {path}", flush=True)
        except OSError as exc:
            self.unsent += len(failed)
            print(f"capture: {len(failed)} records could not be uploaded nor kept locally ({exc}): lost", flush=True)
        with self._lock:
            self.held -= sum(len(line) for _, _, line in failed)


def _chunks(items: list[tuple[float, bytes]]):
    """Consecutive runs of lines of at most MAX_FILE_BYTES together (one line alone may be larger)."""
    chunk, size = [], 0
    for item in items:
        if chunk and size + len(item[1]) > MAX_FILE_BYTES:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += len(item[1]) + 1
    if chunk:
        yield chunk
