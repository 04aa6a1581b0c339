"""A batch request is one capture record; the monitor makes it one row per image (image i with output row i),
and counts a malformed batch as one record not parseable, under its reason."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math

import numpy as np
import pytest
from helpers import solid_png

from scones.monitoring import capture
from services.endpoint.app import EndpointApp
from services.endpoint.capture import CaptureWriter, record

LABELS = ["bicycle", "motorcycle"]


def json_batch(*bodies: bytes) -> bytes:
    return json.dumps([base64.b64encode(b).decode() for b in bodies]).encode()


def npy_batch(levels: list[int], side: int = 32) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.stack([np.full((side, side, 3), v, np.uint8) for v in levels]), allow_pickle=False)
    return buffer.getvalue()


def batch_line(body: bytes, content_type: str, rows: list[list[float]]) -> str:
    return json.dumps(record(body, content_type, json.dumps(rows).encode()))


def read(*lines: str) -> capture.CaptureTable:
    table = capture.CaptureTable(labels=LABELS, threshold=0.93)
    capture.read_text("\n".join(lines), "batch.jsonl", table)
    return table


def test_a_json_batch_record_becomes_one_row_per_image_in_order():
    # given one single-image record and one batch of three (dark, bright, grey) with their three answers
    single = json.dumps(record(solid_png(200), "image/png", b"[0.97, 0.03]"))
    rows = [[0.1, 0.9], [0.99, 0.01], [0.6, 0.4]]
    batch = batch_line(json_batch(solid_png(20), solid_png(230), solid_png(128)), "application/json", rows)
    # when the file is read
    table = read(single, batch)
    # then two records, both parsed, four rows: image i paired with output row i
    assert (table.lines, table.parsed, table.unparseable, table.analysed) == (2, 2, 0, 4)
    assert (table.batches, table.batch_images) == (1, 3)
    assert table.classes == {"bicycle": 3, "motorcycle": 1} and table.below == 2
    dark, bright, grey = table.rows[1:]
    assert (dark["predicted"], dark["confidence"]) == ("motorcycle", 0.9) and dark["brightness"] < 0.1
    assert (bright["predicted"], bright["confidence"]) == ("bicycle", 0.99) and bright["brightness"] > 0.85
    assert grey["confidence"] == 0.6 and grey["margin"] == pytest.approx(0.2)
    assert "1 of them batch records of 3 images" in table.summary()


def test_an_npy_batch_record_gives_its_sizes_and_the_served_pixels():
    table = read(batch_line(npy_batch([10, 240], side=64), "application/x-npy", [[0.2, 0.8], [0.95, 0.05]]))
    first, second = table.rows
    assert (table.analysed, first["width"], first["height"]) == (2, 64, 64)
    assert first["predicted"] == "motorcycle" and second["predicted"] == "bicycle"
    assert first["brightness"] == pytest.approx(10 / 255, abs=1e-3) and second["contrast"] == pytest.approx(0)


@pytest.mark.parametrize(
    ("body", "content_type", "rows", "reason"),
    [
        (json_batch(solid_png(20), solid_png(230)), "application/json", [[0.1, 0.9]], capture.BATCH_LENGTHS),
        (npy_batch([1, 2, 3]), "application/x-npy", [[0.1, 0.9]] * 2, capture.BATCH_LENGTHS),
        (json_batch(solid_png(20)), "application/json", [0.1, 0.9], capture.BAD_BATCH_OUTPUT),
        (json_batch(solid_png(20)), "application/json", [[0.5, 0.6]], capture.NOT_SUMMING),
        (json_batch(solid_png(20)), "application/json", [[0.2, 0.3, 0.5]], capture.CLASS_COUNT),
        (json_batch(solid_png(20), b"not an image"), "application/json", [[0.1, 0.9]] * 2, capture.BAD_IMAGE),
        (b'{"not": "a list"}', "application/json", [[0.1, 0.9]], capture.BAD_IMAGE),
    ],
)
def test_a_malformed_batch_is_one_unparseable_record_with_its_reason(body, content_type, rows, reason):
    table = read(batch_line(body, content_type, rows), json.dumps(record(solid_png(200), "image/png", b"[0.9, 0.1]")))
    assert (table.lines, table.parsed, table.analysed, table.batches) == (2, 1, 1, 0)
    assert table.bad == {reason: 1}


def encoded(rows: list, encoding: str) -> dict:
    """An endpointOutput holding `rows` (a probability list, or one per image) in a capture encoding."""
    text = json.dumps(rows)
    if encoding == "CSV":
        text = "\n".join(",".join(str(p) for p in r) for r in (rows if isinstance(rows[0], list) else [rows]))
    if encoding == "BASE64":
        text = base64.b64encode(text.encode()).decode()
    return {"observedContentType": "application/json", "mode": "OUTPUT", "data": text, "encoding": encoding}


def with_output(rec: dict, output: dict) -> str:
    rec["captureData"]["endpointOutput"] = output
    return json.dumps(rec)


@pytest.mark.parametrize("encoding", ["JSON", "BASE64", "CSV"])
def test_single_and_batch_outputs_are_read_by_one_decoder_in_every_encoding(encoding):
    # given a single-image record and a batch of three, their answers captured in `encoding`
    rows = [[0.1, 0.9], [0.99, 0.01], [0.6, 0.4]]
    single = with_output(record(solid_png(200), "image/png", b"[]"), encoded([0.97, 0.03], encoding))
    images = json_batch(solid_png(20), solid_png(230), solid_png(128))
    batch = with_output(record(images, "application/json", b"[]"), encoded(rows, encoding))
    # and the same two with an answer that is not finite, and with an encoding no endpoint writes
    nan_single = with_output(record(solid_png(200), "image/png", b"[]"), encoded([math.nan, 0.5], encoding))
    nan_batch = with_output(record(images, "application/json", b"[]"), encoded([*rows[:2], [0.5, math.nan]], encoding))
    odd = {**encoded(rows, encoding), "encoding": "PROTOBUF"}
    odd_single = with_output(record(solid_png(200), "image/png", b"[]"), {**odd, "data": "[0.5, 0.5]"})
    odd_batch = with_output(record(images, "application/json", b"[]"), odd)
    # when the file is read
    table = read(single, batch, nan_single, nan_batch, odd_single, odd_batch)
    # then both kinds decode the same way: four rows with the captured answers, the same reasons for the rest
    assert [r["confidence"] for r in table.rows] == [0.97, 0.9, 0.99, 0.6]
    assert (table.parsed, table.batches, table.batch_images) == (2, 1, 3)
    assert table.bad == {capture.NOT_FINITE: 2, capture.OUTPUT_ENCODING: 2}


def test_workers_agree_on_batch_records(tmp_path):
    rows = [[0.1, 0.9], [0.99, 0.01]]
    for f in range(4):
        lines = [batch_line(json_batch(solid_png(20 + f), solid_png(230)), "application/json", rows)] * 3
        (tmp_path / f"{f}.jsonl").write_text("\n".join(lines))
    where = capture.Location.parse(str(tmp_path))
    one, two = (capture.read(where, LABELS, workers=w) for w in (1, 2))
    assert one.analysed == two.analysed == 24 and one.rows == two.rows and one.batch_images == two.batch_images == 24


def call(app: EndpointApp, body: bytes, content_type: str) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/invocations",
        "headers": [(b"content-type", content_type.encode())],
    }
    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    async def run():
        await app.batcher.start()
        try:
            await app(scope, receive, send)
        finally:
            app.batcher.task.cancel()

    asyncio.run(run())
    return sent[0]["status"], sent[1]["body"]


def test_the_real_endpoint_s_batch_captures_read_back_as_one_row_per_image(tiny_model):
    # given the endpoint capturing every request, sent a JSON batch, an .npy batch and a single image
    puts = []
    writer = CaptureWriter(lambda key, body: puts.append(body), "ep", percent=100)
    app = EndpointApp(tiny_model, "ep", capture=writer)
    app._load()
    images = [solid_png(30), solid_png(220), solid_png(120)]
    answers = []
    for body, content_type in (
        (json_batch(*images), "application/json"),
        (npy_batch([30, 220]), "application/x-npy"),
        (images[0], "image/png"),
    ):
        status, answer = call(app, body, content_type)
        assert status == 200, answer
        answers.append(json.loads(answer))
    writer.flush(final=True)
    # when the monitor reads what was captured
    table = capture.CaptureTable(labels=[])
    capture.read_text(b"".join(puts).decode(), "captured.jsonl", table)
    # then three records, six rows, each with the endpoint's own answer for its image
    assert (table.lines, table.parsed, table.unparseable, table.analysed) == (3, 3, 0, 6)
    assert (table.batches, table.batch_images) == (2, 5)
    confidences = [round(r["confidence"], 6) for r in table.rows]
    expected = [max(p) for p in answers[0]] + [max(p) for p in answers[1]] + [max(answers[2])]
    assert confidences == [round(c, 6) for c in expected]
    brightness = [r["brightness"] for r in table.rows]
    assert brightness[0] < brightness[2] < brightness[1] and brightness[3] == pytest.approx(brightness[0], abs=0.01)
