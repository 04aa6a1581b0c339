"""The ASGI app called directly (no sockets): /ping, routing, load errors, stats summed over the board."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import time

import numpy as np
from PIL import Image

from scones.core import settings
from services.endpoint.app import EndpointApp
from services.endpoint.board import Board
from services.endpoint.capture import CaptureWriter


def png_of(side: int) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(1).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def call(app: EndpointApp, method: str, path: str, body: bytes = b"", content_type: str = "image/png", receive=None):
    """One request through the ASGI interface: (status, headers dict, body)."""
    scope = {"type": "http", "method": method, "path": path, "headers": [(b"content-type", content_type.encode())]}
    sent = []

    async def whole_body():
        return {"type": "http.request", "body": body, "more_body": False}

    receive = receive or whole_body

    async def send(message):
        sent.append(message)

    async def run():
        await app.batcher.start()
        try:
            await app(scope, receive, send)
        finally:
            app.batcher.task.cancel()

    asyncio.run(run())
    start, end = sent
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, end["body"]


def test_ping_is_503_until_the_model_is_loaded_then_200(tiny_model):
    # given an app whose model has not been loaded yet
    app = EndpointApp(tiny_model, "ep")
    # when it is asked, then it is unavailable and says so to invocations too
    assert call(app, "GET", "/ping")[0] == 503
    status, headers, body = call(app, "POST", "/invocations", png())
    assert status == 503 and headers["x-amzn-errortype"] == "ServiceUnavailable" and b"loading" in body
    # when the model has loaded, then both answer
    app._load()
    assert call(app, "GET", "/ping")[0] == 200
    status, _, body = call(app, "POST", "/invocations", png())
    assert status == 200 and len(json.loads(body)) == 2


def test_ping_waits_for_every_worker(tiny_model):
    # given two workers on one board, of which only this one has loaded the model
    board = Board(2)
    app = EndpointApp(tiny_model, "ep", board=board)
    app._load()
    assert call(app, "GET", "/ping")[0] == 503
    # when the other worker loads, then the endpoint is ready
    board.slot = 1
    board.set(loaded=1)
    assert call(app, "GET", "/ping")[0] == 200


def test_a_wrong_endpoint_name_is_a_404_validation_error(tiny_model):
    app = EndpointApp(tiny_model, "served-one")
    app._load()
    status, headers, body = call(app, "POST", "/endpoints/other-one/invocations", png())
    assert status == 404 and headers["x-amzn-errortype"] == "ValidationError"
    message = json.loads(body)["message"]
    assert "other-one not found" in message and "served-one" in message


def test_a_model_that_cannot_load_stops_the_worker(tiny_model, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(tiny_model, broken)
    (broken / "labels.json").write_text(json.dumps(["a", "b", "c"]))
    app = EndpointApp(broken, "ep")
    stopped = []
    app.on_load_error = lambda: stopped.append(True)
    app._load()
    assert stopped == [True] and "2 outputs but labels.json names 3" in str(app.load_error)
    assert call(app, "GET", "/ping")[0] == 503


def test_stats_sum_every_workers_counters(tiny_model):
    board = Board(3)
    board.slot = 2
    board.set(requests=5, captured=5, written=4, batches=2, batched_images=5, loaded=1)
    app = EndpointApp(tiny_model, "ep", board=board)  # this process is slot 0
    app._load()
    board.slot = 0
    for _ in range(3):
        assert call(app, "POST", "/invocations", png())[0] == 200
    stats = json.loads(call(app, "GET", "/_scones/stats")[2])
    assert stats["workers"] == 3 and stats["requests_per_worker"] == [3, 0, 5]
    assert stats["requests"] == 8 and stats["captured"] == 5 and stats["capture_pending"] == 1


def test_limits_are_the_settings_unless_given(tiny_model, monkeypatch):
    # given settings for the batch size, the wait and the largest body
    monkeypatch.setenv(settings.MAX_BATCH_SIZE, "5")
    monkeypatch.setenv(settings.MAX_WAIT_MS, "7")
    monkeypatch.setenv(settings.MAX_PAYLOAD_MB, "1")
    # when an app is made without limits, and one with them
    from_settings = EndpointApp(tiny_model, "ep")
    given = EndpointApp(tiny_model, "ep", max_batch_size=2, max_wait_ms=0, max_body_bytes=10)
    # then the arguments beat the settings
    limits = [(a.batcher.max_batch_size, a.batcher.max_wait_s, a.max_body_bytes) for a in (from_settings, given)]
    assert limits == [(5, 0.007, 1024 * 1024), (2, 0.0, 10)]


def test_a_body_that_does_not_arrive_in_time_is_a_408_and_counted(tiny_model):
    # given a client that sends half its body and then nothing
    app = EndpointApp(tiny_model, "ep", body_timeout_s=0.2)
    app._load()
    parts = [{"type": "http.request", "body": png()[:20], "more_body": True}]

    async def slow():
        if parts:
            return parts.pop()
        await asyncio.sleep(3600)

    # then it is answered 408 naming the setting, and counted
    status, _, body = call(app, "POST", "/invocations", receive=slow)
    assert status == 408 and "SCONES_BODY_TIMEOUT_S" in json.loads(body)["message"]
    assert json.loads(call(app, "GET", "/_scones/stats")[2])["body_timeouts"] == 1


def down(key, body):
    raise ConnectionError("S3 is down")


def test_block_policy_answers_503_when_capture_stays_full_and_nothing_is_lost(tiny_model):
    # given S3 down and a capture buffer with room for about one record
    capture = CaptureWriter(down, "ep", max_bytes=2000, when_full="block")
    app = EndpointApp(tiny_model, "ep", capture=capture, capture_block_s=0.3)
    app._load()
    # when two requests come, then the first is answered and captured; the second waits, then is a 503
    assert call(app, "POST", "/invocations", png())[0] == 200
    status, _, body = call(app, "POST", "/invocations", png())
    assert status == 503 and "capture buffer stayed full" in json.loads(body)["message"]
    stats = json.loads(call(app, "GET", "/_scones/stats")[2])
    assert stats["capture_refused_full"] == 1 and stats["captured"] == 1
    assert stats["capture_lost"] == {"dropped_full": 0, "unsent": 0, "killed_workers": 0}


def test_drop_policy_answers_and_counts_what_it_could_not_capture(tiny_model):
    capture = CaptureWriter(down, "ep", max_bytes=2000, when_full="drop")
    app = EndpointApp(tiny_model, "ep", capture=capture)
    app._load()
    assert [call(app, "POST", "/invocations", png())[0] for _ in range(3)] == [200, 200, 200]
    stats = json.loads(call(app, "GET", "/_scones/stats")[2])
    assert stats["captured"] == 1 and stats["capture_lost"]["dropped_full"] == 2


def test_big_bodies_decode_a_few_at_a_time_and_memory_is_trimmed_after(tiny_model, monkeypatch):
    # given a decoder that records how many run at once, and malloc_trim watched
    from services.endpoint import app as app_module

    running, peak, trims = [0], [0], []
    real = app_module.inference.decode

    def decode(*args):
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        running[0] -= 1
        return real(*args)

    monkeypatch.setattr(app_module.inference, "decode", decode)
    monkeypatch.setattr(app_module, "trim_memory", lambda: trims.append(1))
    big = png_of(600)  # over BIG_BODY
    app = EndpointApp(tiny_model, "ep")
    app._load()

    async def burst():
        await app.batcher.start()
        results = await asyncio.gather(*(app._decode_big(big, "image/png") for _ in range(8)))
        app.batcher.task.cancel()
        await asyncio.sleep(0.05)
        return results

    results = asyncio.run(burst())
    # then at most BIG_DECODES ran at once and memory was handed back when the burst ended
    assert len(results) == 8 and peak[0] <= app_module.BIG_DECODES and trims


def batch_of(*bodies: bytes) -> bytes:
    import base64

    return json.dumps([base64.b64encode(b).decode() for b in bodies]).encode()


def test_a_batch_body_is_one_request_one_captured_record_and_a_list_per_image(tiny_model):
    # given an app capturing every request
    puts = []
    capture = CaptureWriter(lambda key, body: puts.append(body), "ep", percent=100)
    app = EndpointApp(tiny_model, "ep", capture=capture)
    app._load()
    single = json.loads(call(app, "POST", "/invocations", png())[2])
    # when three images come as one JSON batch through the runtime API
    body = batch_of(png(), png_of(40), png())
    status, _, answer = call(app, "POST", "/endpoints/ep/invocations", body, "application/json")
    # then the answer is a list per image, in order, the first equal to the single answer
    assert status == 200, answer
    rows = json.loads(answer)
    assert len(rows) == 3 and rows[0] == single == rows[2]
    # and capture holds one record for the batch request, its input the batch body as sent
    stats = json.loads(call(app, "GET", "/_scones/stats")[2])
    assert stats["requests"] == 2 and stats["captured"] == 2
    capture.flush(final=True)
    lines = [json.loads(line) for blob in puts for line in blob.splitlines()]
    batch_record = lines[-1]["captureData"]
    assert batch_record["endpointInput"]["observedContentType"] == "application/json"
    import base64

    assert base64.b64decode(batch_record["endpointInput"]["data"]) == body
    assert json.loads(batch_record["endpointOutput"]["data"]) == rows


def test_a_batch_body_over_the_limit_is_413_naming_the_limit(tiny_model):
    app = EndpointApp(tiny_model, "ep", max_body_bytes=1000)
    app._load()
    status, _, answer = call(app, "POST", "/invocations", batch_of(*[png()] * 5), "application/json")
    assert status == 413
    message = json.loads(answer)["message"]
    assert "limit of 1000 bytes" in message and "SCONES_MAX_PAYLOAD_MB" in message


def test_a_bad_image_in_a_batch_is_a_400_naming_it_and_the_server_answers_after(tiny_model):
    app = EndpointApp(tiny_model, "ep")
    app._load()
    status, _, answer = call(app, "POST", "/invocations", batch_of(png(), b"not an image"), "application/json")
    assert status == 400 and "image 1 of the batch" in json.loads(answer)["message"]
    assert call(app, "POST", "/invocations", batch_of(png()), "application/json")[0] == 200
