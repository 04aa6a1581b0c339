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
