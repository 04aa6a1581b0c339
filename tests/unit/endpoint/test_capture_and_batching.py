from __future__ import annotations

import asyncio
import base64
import os
import re
import uuid
from datetime import UTC, datetime

import numpy as np
import pytest

from scones.core import settings
from services.endpoint.batching import DynamicBatcher
from services.endpoint.capture import CaptureWriter, event_id, object_key, parse_lines, record

KEY = re.compile(r"^datacapture/ep/AllTraffic/\d{4}/\d{2}/\d{2}/\d{2}/\d{2}-\d{2}-\d{3}-[0-9a-f-]{36}\.jsonl$")


def test_record_has_sagemakers_shape():
    when = datetime(2024, 11, 25, 23, 21, 43, tzinfo=UTC)
    rec = record(b"\x89PNG", "image/png", b"[0.9, 0.1]", when)
    assert rec["captureData"]["endpointInput"] == {
        "observedContentType": "image/png",
        "mode": "INPUT",
        "data": base64.b64encode(b"\x89PNG").decode(),
        "encoding": "BASE64",
    }
    assert rec["captureData"]["endpointOutput"] == {
        "observedContentType": "application/json",
        "mode": "OUTPUT",
        "data": "[0.9, 0.1]",
        "encoding": "JSON",
    }
    assert rec["eventMetadata"]["inferenceTime"] == "2024-11-25T23:21:43Z" and rec["eventVersion"] == "0"


def test_event_ids_are_version_4_uuids():
    for raw in (bytes(16), b"\xff" * 16, os.urandom(16)):
        parsed = uuid.UUID(event_id(raw))
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == event_id(raw)


def test_key_layout():
    when = datetime(2024, 11, 25, 23, 21, 43, 123456, tzinfo=UTC)
    key = object_key("datacapture", "ep", "AllTraffic", when)
    assert KEY.match(key) and key.startswith("datacapture/ep/AllTraffic/2024/11/25/23/21-43-123-")


def test_writer_takes_prefix_and_percent_from_the_settings_unless_given(monkeypatch):
    # given settings that move the capture and sample a quarter of it
    monkeypatch.setenv(settings.CAPTURE_PREFIX, "elsewhere/")
    monkeypatch.setenv(settings.CAPTURE_PERCENT, "25")
    # when a writer is made without them, and one with them
    from_settings = CaptureWriter(lambda k, b: None, "ep")
    given = CaptureWriter(lambda k, b: None, "ep", prefix="datacapture", percent=100)
    # then the arguments beat the settings, which beat the defaults
    assert (from_settings.prefix, from_settings.percent, from_settings.variant) == ("elsewhere", 25.0, "AllTraffic")
    assert (given.prefix, given.percent) == ("datacapture", 100)


def test_writer_flushes_by_count_and_reads_back_every_line():
    files: dict[str, bytes] = {}
    writer = CaptureWriter(lambda k, b: files.__setitem__(k, b), "ep", max_records=3)
    due = []
    for i in range(7):
        due.append(writer.add(b"x%d" % i, "image/png", b"[1.0]"))
        if due[-1]:
            writer.flush()  # as the server does, off its event loop
    assert due == [False, False, True, False, False, True, False]
    assert (writer.files, writer.pending()) == (2, 1)
    writer.flush(final=True)
    assert writer.written == 7 and writer.pending() == 0
    lines = [line for body in files.values() for line in parse_lines(body.decode())]
    assert sorted(base64.b64decode(r["captureData"]["endpointInput"]["data"]) for r in lines) == sorted(
        b"x%d" % i for i in range(7)
    )
    assert all(KEY.match(k) for k in files)


def test_a_full_buffer_asks_for_one_flush_until_it_is_flushed():
    # given a writer whose buffer filled while its flush has not run yet (the server runs it on a thread)
    writer = CaptureWriter(lambda k, b: None, "ep", max_records=3)
    asked = [writer.add(b"x", "image/png", b"[1.0]") for _ in range(10)]
    # then only the record that filled it asked for a flush; after the flush the next fill asks again
    assert asked == [False, False, True] + [False] * 7
    writer.flush()
    assert [writer.add(b"x", "image/png", b"[1.0]") for _ in range(3)] == [False, False, True]


def test_failed_upload_keeps_records_and_final_flush_writes_them_locally(tmp_path):
    def broken(key, body):
        raise ConnectionError("S3 is down")

    writer = CaptureWriter(broken, "ep", fallback_dir=tmp_path)
    for i in range(4):
        writer.add(b"%d" % i, "image/png", b"[1.0]")
    assert writer.flush() == 0 and writer.pending() == 4
    writer.flush(final=True)
    (kept,) = tmp_path.glob("capture-unsent-*.jsonl")
    assert len(parse_lines(kept.read_text())) == 4
    assert (writer.spooled, writer.unsent) == (4, 0)


def test_records_are_encoded_once_across_failed_uploads(monkeypatch):
    # given S3 down for two flushes, and the line encoder counted
    from services.endpoint import capture

    encoded = []
    real = capture._line
    monkeypatch.setattr(capture, "_line", lambda rec: encoded.append(1) or real(rec))
    up = [False]
    files: dict[str, bytes] = {}

    def put(key, body):
        if not up[0]:
            raise ConnectionError("S3 is down")
        files[key] = body

    writer = CaptureWriter(put, "ep", max_bytes=1 << 20, when_full="drop")
    for i in range(5):
        writer.add(b"%d" % i, "image/png", b"[1.0]")
    # when two flushes fail and a third succeeds
    assert writer.flush() == 0 and writer.flush() == 0
    up[0] = True
    assert writer.flush() == 5
    # then each record was encoded once, and the bytes held are back to zero
    assert len(encoded) == 5 and writer.held == 0 and writer.pending() == 0
    assert sum(len(parse_lines(b.decode())) for b in files.values()) == 5


def test_the_byte_bound_holds_while_s3_is_down_and_drops_are_counted():
    # given S3 down and a 1 MiB bound with the drop policy
    def broken(key, body):
        raise ConnectionError("S3 is down")

    writer = CaptureWriter(broken, "ep", max_bytes=1 << 20, when_full="drop", max_records=10)
    body = os.urandom(100_000)
    # when 100 requests of 100 kB arrive (flushing as the server does)
    for _ in range(100):
        if writer.add(body, "image/png", b"[1.0]"):
            writer.flush()
    writer.flush()
    # then what is held stays under the bound, and every record is either held or counted as dropped
    assert writer.held <= 1 << 20
    assert writer.captured + writer.dropped == 100 and writer.dropped > 80
    assert writer.lost()["dropped_full"] == writer.dropped
    assert writer.room(body, b"[1.0]") is False


def test_block_policy_leaves_room_decisions_to_the_caller_and_room_returns_after_a_flush():
    files = {}
    writer = CaptureWriter(lambda k, b: files.__setitem__(k, b), "ep", max_bytes=300_000, when_full="block")
    body = os.urandom(100_000)
    writer.add(body, "image/png", b"[1.0]")
    writer.add(body, "image/png", b"[1.0]")
    assert not writer.room(body, b"[1.0]")  # the app waits (then 503s) instead of adding
    writer.flush()
    assert writer.room(body, b"[1.0]") and writer.held == 0


def test_what_neither_s3_nor_the_disk_takes_at_shutdown_is_counted_unsent(tmp_path):
    def broken(key, body):
        raise ConnectionError("S3 is down")

    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the fallback folder should be: mkdir fails
    writer = CaptureWriter(broken, "ep", fallback_dir=blocked / "sub")
    for i in range(3):
        writer.add(b"%d" % i, "image/png", b"[1.0]")
    writer.flush(final=True)
    assert (writer.unsent, writer.spooled, writer.lost()["unsent"], writer.held) == (3, 0, 3, 0)


def test_a_large_retry_is_split_into_files_of_bounded_size(monkeypatch):
    from services.endpoint import capture

    monkeypatch.setattr(capture, "MAX_FILE_BYTES", 2000)
    files: dict[str, bytes] = {}
    writer = CaptureWriter(lambda k, b: files.__setitem__(k, b), "ep")
    for _ in range(10):
        writer.add(os.urandom(600), "image/png", b"[1.0]")
    assert writer.flush() == 10
    assert len(files) > 3 and sum(len(parse_lines(b.decode())) for b in files.values()) == 10


def test_sampling_percentage():
    writer = CaptureWriter(lambda k, b: None, "ep", percent=25)
    share = sum(writer.sampled() for _ in range(20000)) / 20000
    assert 0.22 < share < 0.28
    with pytest.raises(ValueError):
        CaptureWriter(lambda k, b: None, "ep", percent=120)


def test_batcher_groups_concurrent_requests_and_routes_results():
    calls = []

    def predict(images):
        calls.append(len(images))
        return images.reshape(len(images), -1).mean(axis=1, keepdims=True)

    async def main():
        batcher = DynamicBatcher(predict, max_batch_size=8, max_wait_ms=20)
        await batcher.start()
        images = [np.full((2, 2, 3), i, np.float32) for i in range(20)]
        results = await asyncio.gather(*(batcher.submit(im) for im in images))
        await batcher.stop()
        return results

    results = asyncio.run(main())
    assert [float(r[0]) for r in results] == [float(i) for i in range(20)]
    assert max(calls) == 8 and sum(calls) == 20 and len(calls) < 20


def test_batcher_lone_request_does_not_wait_when_nothing_else_is_expected():
    async def main():
        batcher = DynamicBatcher(lambda images: images, max_batch_size=8, max_wait_ms=500, expected=lambda: 1)
        await batcher.start()
        started = asyncio.get_running_loop().time()
        await batcher.submit(np.zeros((2, 2, 3)))
        elapsed = asyncio.get_running_loop().time() - started
        await batcher.stop()
        return elapsed

    assert asyncio.run(main()) < 0.25


def test_batcher_failure_fails_requests_not_the_loop():
    def predict(images):
        raise RuntimeError("model exploded")

    async def main():
        batcher = DynamicBatcher(predict, max_batch_size=4, max_wait_ms=1)
        await batcher.start()
        with pytest.raises(RuntimeError, match="exploded"):
            await batcher.submit(np.zeros((2, 2, 3)))
        assert not batcher.task.done()
        await batcher.stop()

    asyncio.run(main())
