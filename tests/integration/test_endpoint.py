"""The model server as a client sees it: boto3's sagemaker-runtime, raw HTTP, capture files in S3."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import random
import shutil
import signal
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from helpers import environ, png_bomb
from PIL import Image

from scones import endpoint, models
from scones.core import aws, settings
from scones.load import Retry
from services.endpoint import inference
from services.endpoint.capture import parse_lines

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def png(seed: int = 0, mode: str = "RGB", size=(32, 32), fmt: str = "PNG") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").convert(mode).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def capture_bucket(local_cloud):
    import uuid

    name = f"capture-{uuid.uuid4().hex[:8]}"
    aws.client("s3").create_bucket(Bucket=name)
    os.environ[settings.CAPTURE_BUCKET] = name
    yield name
    os.environ.pop(settings.CAPTURE_BUCKET, None)


@pytest.fixture
def serve(capture_bucket, tiny_model, unique):
    """Start endpoints (stopped at the end); returns (name, url)."""
    names = []

    def start(model=tiny_model, workers=None, **env):
        name = f"ep-{unique}-{len(names)}"
        names.append(name)
        with environ(env):
            found = endpoint.start(str(model), name, port=0, log=lambda _m: None, workers=workers)
        return name, found.url

    saved_runtime = os.environ.get(settings.SAGEMAKER_RUNTIME_URL)
    yield start
    for name in names:
        endpoint.stop(name, log=lambda _m: None)
    if saved_runtime is None:  # runtime_client() pointed this process at these endpoints: not the next module
        os.environ.pop(settings.SAGEMAKER_RUNTIME_URL, None)
    else:
        os.environ[settings.SAGEMAKER_RUNTIME_URL] = saved_runtime
    aws.reset()


def runtime_client(url: str):
    os.environ[settings.SAGEMAKER_RUNTIME_URL] = url
    aws.reset()
    return aws.client("sagemaker-runtime", max_attempts=1)


def captured(bucket: str, name: str) -> list[dict]:
    s3 = aws.client("s3")
    records = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"datacapture/{name}/"):
        for obj in page.get("Contents", []):
            records += parse_lines(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode())
    return records


def test_boto3_invoke_endpoint_and_capture(serve, capture_bucket):
    name, url = serve()
    runtime = runtime_client(url)
    body = png(1)
    response = runtime.invoke_endpoint(EndpointName=name, ContentType="image/png", Body=body)
    probs = json.loads(response["Body"].read())
    assert len(probs) == 2 and abs(sum(probs) - 1) < 1e-4
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    endpoint.stop(name, log=lambda _m: None)  # flushes the capture buffer
    (rec,) = captured(capture_bucket, name)
    assert base64.b64decode(rec["captureData"]["endpointInput"]["data"]) == body
    assert json.loads(rec["captureData"]["endpointOutput"]["data"]) == probs
    keys = aws.client("s3").list_objects_v2(Bucket=capture_bucket, Prefix=f"datacapture/{name}/")["Contents"]
    assert keys[0]["Key"].startswith(f"datacapture/{name}/AllTraffic/{time.strftime('%Y/%m/%d', time.gmtime())}/")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (png(2, "RGBA"), "image/png"),
        (png(3, "L"), "image/png"),
        (png(4, "P"), "application/x-image"),
        (png(5, fmt="JPEG"), "image/jpeg"),
        (png(6, size=(100, 60)), "image/png"),
    ],
)
def test_modes_formats_and_sizes_answer_as_the_handlers_do_in_process(serve, tiny_model, body, content_type):
    name, url = serve(workers=2)
    served = runtime_client(url).invoke_endpoint(EndpointName=name, ContentType=content_type, Body=body)["Body"].read()
    model = inference.model_fn(tiny_model)
    expected = inference.output_fn(inference.predict_fn(inference.input_fn(body, content_type), model))
    assert json.loads(served) == pytest.approx(json.loads(expected), abs=2e-6)  # batched vs alone: float noise


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"\x89PNG\r\n\x1a\n corrupt", "image/png", 400),
        (b"", "image/png", 400),
        (b"\0" * (50 * 1024 * 1024), "image/png", 413),
        (png_bomb(), "image/png", 413),
        (b"a,b\n1,2\n", "text/csv", 415),
    ],
    ids=["corrupt", "empty", "50MB", "decompression-bomb", "csv"],
)
def test_bad_inputs_are_model_errors_and_the_server_keeps_serving(serve, body, content_type, status):
    name, url = serve()
    runtime = runtime_client(url)
    with pytest.raises(runtime.exceptions.ModelError) as raised:
        runtime.invoke_endpoint(EndpointName=name, ContentType=content_type, Body=body)
    assert raised.value.response["OriginalStatusCode"] == status
    assert raised.value.response["OriginalMessage"]
    after = runtime.invoke_endpoint(EndpointName=name, ContentType="image/png", Body=png(9))
    assert len(json.loads(after["Body"].read())) == 2


def test_ping_direct_invocations_and_unknown_endpoint(serve):
    name, url = serve()
    with urllib.request.urlopen(url + "/ping") as response:
        assert response.status == 200
    request = urllib.request.Request(url + "/invocations", data=png(7), headers={"Content-Type": "image/png"})
    with urllib.request.urlopen(request) as response:
        assert len(json.loads(response.read())) == 2
    runtime = runtime_client(url)
    with pytest.raises(runtime.exceptions.ClientError) as raised:
        runtime.invoke_endpoint(EndpointName="nope", ContentType="image/png", Body=png(7))
    assert raised.value.response["Error"]["Code"] == "ValidationError"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert raised.value.response["Error"]["Message"] == (
        f"Endpoint nope not found: this server serves the endpoint {name}"
    )


def test_model_folder_without_labels_is_a_clear_startup_error(serve, tiny_model, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(tiny_model, broken)
    (broken / "labels.json").unlink()
    with pytest.raises(models.InvalidModelError, match=r"lacks labels\.json"):  # refused before any server starts
        serve(broken)


def test_labels_that_do_not_match_the_outputs_stop_every_worker_at_load(serve, tiny_model, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(tiny_model, broken)
    labels = ["bicycle", "motorcycle", "bus"]
    (broken / "labels.json").write_text(json.dumps(labels))
    config = json.loads((broken / "config.json").read_text())  # consistent files: only the outputs disagree
    config["hyperparameters"]["classes"] = labels
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(endpoint.EndpointError, match=r"2 outputs but labels\.json names 3 classes"):
        serve(broken, workers=2)


def post(url: str, body: bytes, connection: http.client.HTTPConnection | None = None) -> int:
    host, port = url.split("//")[1].split(":")
    conn = connection or http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", "/invocations", body=body, headers={"Content-Type": "image/png"})
    response = conn.getresponse()
    response.read()
    return response.status


@pytest.mark.parametrize("workers", [1, 3])
def test_1000_concurrent_requests_give_1000_capture_records(serve, capture_bucket, workers):
    name, url = serve(workers=workers)
    assert endpoint.status(name).workers == workers
    bodies = [png(i % 50) for i in range(1000)]

    def worker(chunk: list[bytes]) -> list[int]:
        host, port = url.split("//")[1].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        return [post(url, body, conn) for body in chunk]

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = [s for chunk in pool.map(worker, [bodies[i::16] for i in range(16)]) for s in chunk]
    assert statuses.count(200) == 1000
    with urllib.request.urlopen(url + "/_scones/stats") as response:
        stats = json.loads(response.read())
    assert stats["captured"] == 1000 and stats["requests"] == 1000 and sum(stats["requests_per_worker"]) == 1000
    assert stats["mean_batch_size"] > 1  # concurrent requests were batched
    endpoint.stop(name, log=lambda _m: None)
    records = captured(capture_bucket, name)
    assert len(records) == 1000
    sent = sorted(bodies)
    assert sorted(base64.b64decode(r["captureData"]["endpointInput"]["data"]) for r in records) == sent


@pytest.mark.parametrize("workers", [1, 3])
def test_sigterm_mid_load_loses_no_record(serve, capture_bucket, workers):
    name, url = serve(workers=workers, SCONES_MAX_WAIT_MS="5")
    ok = []
    stop = threading.Event()

    def client(seed: int) -> None:
        host, port = url.split("//")[1].split(":")
        while not stop.is_set():
            try:
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
                if post(url, png(seed), conn) == 200:
                    ok.append(seed)
            except OSError:
                return  # the server has gone: nothing more can be answered (or captured)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    assert len(ok) > 20
    endpoint.stop(name, log=lambda _m: None)  # SIGTERM while clients are still sending
    stop.set()
    for t in threads:
        t.join()
    records = captured(capture_bucket, name)
    assert len(records) == len(ok)  # records in = records out, across every worker
    assert len({r["eventMetadata"]["eventId"] for r in records}) == len(records)  # none written twice


def stats_of(url: str) -> dict:
    with urllib.request.urlopen(url + "/_scones/stats") as response:
        return json.loads(response.read())


def test_a_worker_killed_mid_load_has_its_uncaptured_records_counted(serve, capture_bucket):
    # given two workers answering a steady load (records wait in their buffers: max age 5 s)
    name, url = serve(workers=2, SCONES_MAX_WAIT_MS="5")
    ok, dropped, stop = [], [], threading.Event()

    def client(seed: int) -> None:
        host, port = url.split("//")[1].split(":")
        while not stop.is_set():
            try:
                if post(url, png(seed), http.client.HTTPConnection(host, int(port), timeout=10)) == 200:
                    ok.append(seed)  # (a 503 while the restarted worker loads is answered, not captured)
            except OSError:
                dropped.append(seed)  # the connection went down with the worker

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    # when one worker is killed outright (its buffer dies with it)
    os.kill(stats_of(url)["worker_pids"][0], signal.SIGKILL)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    # then the loss is counted, in the stats that `scones endpoint status` prints, and nothing else is lost
    lost = stats_of(url)["capture_lost"]["killed_workers"]
    assert lost > 0
    found = endpoint.status(name)
    for _ in range(100):  # the supervisor restarts the killed worker: status reads stats once it is loaded again
        if found.running:
            break
        time.sleep(0.1)
        found = endpoint.status(name)
    assert f'"killed_workers": {lost}' in json.dumps(found.stats)
    endpoint.stop(name, log=lambda _m: None)
    # a request the worker had captured (and counted) when it died may never have reached its client, which saw
    # its connection drop (so did clients whose new connection was queued to the dead worker: nothing captured)
    assert len(ok) - lost <= len(captured(capture_bucket, name)) <= len(ok) - lost + len(dropped)


def test_workers_exit_with_a_killed_supervisor_and_the_port_is_free_again(serve, tiny_model):
    from scones.core import service

    # given an endpoint of two workers on a fixed port
    name, url = serve(workers=2)
    port, pids = int(url.rsplit(":", 1)[1]), stats_of(url)["worker_pids"]
    supervisor = endpoint.status(name).pid
    # when its supervisor is killed outright
    os.kill(supervisor, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while any(service.alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    # then its workers have gone too (graceful: SIGTERM), stop says so, and the port serves again
    assert not any(service.alive(p) for p in pids)
    endpoint.stop(name, log=lambda _m: None)
    again = endpoint.start(str(tiny_model), name, port=port, log=lambda _m: None, workers=2)
    assert again.running and again.url == url


def poll_invocations(url: str, stop: threading.Event, statuses: list, resets: list) -> None:
    """Invoke all along, a new connection each time. A reset connection (or a broken pipe while the body was being
    sent) is sent again as the workflow would (Retry: the classify step's Retry, jittered): the kernel resets a
    connection still queued at a listener that closes (the old set's, at the switch). A refused connection is not
    retried: it means the port had no listener at all, which a switch must never cause."""
    rng = random.Random()

    def once() -> int | str | ConnectionError:
        try:
            return post(url, png(1))
        except ConnectionRefusedError as exc:
            return repr(exc)
        except ConnectionError as exc:
            return exc
        except OSError as exc:
            return repr(exc)

    while not stop.is_set():
        outcome, retries = Retry().send(once, rng, answered=lambda o: not isinstance(o, ConnectionError))
        if retries:
            resets.append(retries)
        statuses.append(repr(outcome) if isinstance(outcome, ConnectionError) else outcome)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_bad_model_never_stops_the_endpoint_and_a_good_one_switches_without_a_failed_request(
    serve, tiny_model, tmp_path, workers
):
    # given a serving endpoint and a client invoking it all along
    name, url = serve(workers=workers)
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"not a tarball")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "labels.json").write_text(json.dumps(["a", "b", "c"]))  # loads, then refused: 2 outputs, 3 labels
    statuses, resets, stop = [], [], threading.Event()
    poller = threading.Thread(target=poll_invocations, args=(url, stop, statuses, resets))
    poller.start()
    try:
        # when a deploy brings a garbage archive or a model that cannot load, then it fails in one line...
        for bad in (garbage, broken):
            with pytest.raises(endpoint.EndpointError) as raised:
                endpoint.switch(str(bad), name, log=lambda _m: None)
            assert "still serves" in raised.value.line() and "\n" not in raised.value.line()
            assert endpoint.status(name).running
        # ... and a good model is switched to on the same URL
        good = tmp_path / "good"
        shutil.copytree(tiny_model, good)
        switched = endpoint.switch(str(good), name, log=lambda _m: None)
        time.sleep(0.5)
    finally:
        stop.set()
        poller.join()
    assert switched.url == url and endpoint.record(name)["model_uri"] == str(good)
    # and no request failed along the way (at most one request met a reset connection at the switch, answered on
    # its retry)
    assert len(statuses) > 20 and set(statuses) == {200}, [s for s in statuses if s != 200][:3]
    assert len(resets) <= 1


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_a_flood_while_s3_refuses_holds_the_worker_under_its_capture_bound(serve):
    """Issue #21: while S3 was unreachable, 200 requests of 5.9 MB PNGs took one worker to 7.7 GB. Now the capture
    buffer holds at most SCONES_CAPTURE_MAX_MB; past it, `drop` answers and counts the loss."""
    # given one worker whose capture uploads all fail (no such bucket), with an 8 MB bound and the drop policy
    name, url = serve(
        workers=1, SCONES_CAPTURE_MAX_MB="8", SCONES_CAPTURE_WHEN_FULL="drop", SCONES_CAPTURE_BUCKET="no-such-bucket"
    )
    (pid,) = stats_of(url)["worker_pids"]
    body = png(seed=7, size=(640, 640))  # random pixels: ~1.2 MB that no encoder shrinks
    assert post(url, body) == 200
    before = rss_mb(pid)
    # when 300 such requests (~370 MB of bodies, ~490 MB once base64-encoded for capture) arrive
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _i: post(url, body), range(300)))
    # then all are answered, the worker grew by less than the bound plus working memory (decoding, allocator),
    # and the loss is counted
    assert codes == [200] * 300
    grown = rss_mb(pid) - before
    assert grown < 8 + 140, f"worker {pid} grew {grown:.0f} MB under an 8 MB capture bound"
    assert stats_of(url)["capture_lost"]["dropped_full"] > 0
    endpoint.stop(name, log=lambda _m: None)
