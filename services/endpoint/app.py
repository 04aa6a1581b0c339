"""The endpoint's ASGI app: SageMaker's container contract and runtime API, one worker's requests.

    GET  /ping                             200 once the model is loaded (by every worker), 503 before
    POST /invocations                      the container contract (what SageMaker's front end calls)
    POST /endpoints/{name}/invocations     the runtime API, so boto3's sagemaker-runtime.invoke_endpoint works
                                           through AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME
    GET  /_scones/stats                    counters (requests, batches, captured and written records), summed
                                           over every worker from the board (board.py)

Requests are decoded on arrival, routed to a production variant (variants.py: by the client's
X-Amzn-SageMaker-Target-Variant, else by weight), grouped by that variant's dynamic batcher (batching.py),
answered as a JSON list of probabilities by the serving handlers (inference.py) with the variant named in
X-Amzn-Invoked-Production-Variant, and captured (sampled) in SageMaker's format under the variant's own prefix
(capture.py). A shadow variant's share of requests is mirrored to it after production has answered, off the
request path; its answer is captured, never sent. A batch body (application/json list of base64 images, or
application/x-npy) is one request: its images join the variant's dynamic batcher together, the answer is a list
per image, capture keeps one record for it, as SageMaker's data capture does, and it is not mirrored.
Each variant's Invocations, Invocation4XXErrors, Invocation5XXErrors and ModelLatency (microseconds) are put
to CloudWatch (AWS/SageMaker, EndpointName and VariantName) every metrics period, as SageMaker does, and beside
them each variant's LowConfidenceRate and ConfidenceDrift over its latest answers (quality.py): rollouts' alarms
read them. The models load on a thread after startup; shutdown flushes the capture buffers. The
processes that run this app are supervisor.py's; the command line is cli.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from scones.core import settings

from . import inference, quality
from .batching import DynamicBatcher
from .board import Board
from .capture import CaptureWriter, event_id
from .variants import INFERENCE_ID_HEADER, INVOKED_HEADER, POLL_S, PRODUCTION, TARGET_HEADER, Router, Variant

JSON_HEADERS = [(b"content-type", b"application/json")]


class PayloadTooLargeError(inference.InferenceError):
    status_code = 413


class RequestTimeoutError(inference.InferenceError):
    status_code = 408


class UnknownVariantError(inference.InferenceError):
    status_code = 400


class CaptureFullError(inference.InferenceError):
    """The capture buffer stayed full (S3 unreachable?) for the whole wait: answered rather than lost silently."""

    status_code = 503


BIG_BODY = 65536  # bodies above this decode off the event loop, at most BIG_DECODES at once per worker
BIG_DECODES = 2  # bounds a worker's decoding memory: each big decode holds up to ~4 bytes × MAX_PIXELS × 3


def _malloc_trim() -> Callable[[], object]:
    """glibc's malloc_trim(0): hands freed heap pages back to the system (after big decodes, the freed arrays of
    every arena otherwise stay in the process). A no-op elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        trim = ctypes.CDLL("libc.so.6").malloc_trim
        return lambda: trim(0)
    return lambda: None


trim_memory = _malloc_trim()

NAMESPACE = "AWS/SageMaker"  # where SageMaker puts an endpoint's invocation metrics
MAX_VALUES = 150  # distinct values one PutMetricData datum may carry


class Served:
    """One variant in this worker: its model, batcher, capture writer, counters and the metrics not yet put."""

    def __init__(
        self, index: int, variant: Variant, batcher: DynamicBatcher, capture: CaptureWriter | None, window: int
    ) -> None:
        self.index, self.variant, self.batcher, self.capture = index, variant, batcher, capture
        self.model: inference.Model | None = None
        self.recent = quality.Window(window)  # its latest answers' confidences (quality.py)
        self.requests = self.errors5xx = self.errors4xx = 0
        self.window = [0, 0, 0, []]  # since the last put: invocations, 5xx, 4xx, latencies (ms)

    def count(self, status: int, latency_ms: float | None = None) -> None:
        self.requests += 1
        self.window[0] += 1
        if status >= 500:
            self.errors5xx += 1
            self.window[1] += 1
        elif status >= 400:
            self.errors4xx += 1
            self.window[2] += 1
        if latency_ms is not None:
            self.window[3].append(latency_ms)

    def metric_data(self, endpoint: str, when: datetime) -> list[dict]:
        """What SageMaker would put for this variant since the last call (nothing when no request came)."""
        (invocations, e5, e4, latencies), self.window = self.window, [0, 0, 0, []]
        if not invocations:
            return []
        dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": self.variant.name}]
        data = [
            {"MetricName": name, "Dimensions": dims, "Timestamp": when, "Value": float(value), "Unit": "None"}
            for name, value in (("Invocations", invocations), ("Invocation5XXErrors", e5), ("Invocation4XXErrors", e4))
        ]
        if latencies:
            counts: dict[float, int] = {}
            step = 10.0  # microseconds; coarser until the distinct values fit one datum
            while True:
                counts.clear()
                for ms in latencies:
                    key = round(ms * 1000 / step) * step
                    counts[key] = counts.get(key, 0) + 1
                if len(counts) <= MAX_VALUES:
                    break
                step *= 4
            data.append(
                {
                    "MetricName": "ModelLatency",
                    "Dimensions": dims,
                    "Timestamp": when,
                    "Values": list(counts),
                    "Counts": [float(n) for n in counts.values()],
                    "Unit": "Microseconds",
                }
            )
        return data


class EndpointApp:
    def __init__(
        self,
        model_dir: Path,
        name: str,
        capture: CaptureWriter | None = None,
        max_batch_size: int | None = None,
        max_wait_ms: float | None = None,
        max_body_bytes: int | None = None,
        board: Board | None = None,
        threads: int | None = None,
        body_timeout_s: float | None = None,
        capture_block_s: float | None = None,
        variants: list[Variant] | None = None,
        capture_for: Callable[[str], CaptureWriter | None] | None = None,
        control: Path | None = None,
        put_metrics: Callable[..., None] | None = None,
        metrics_period_s: float | None = None,
        window: int | None = None,
        threshold: float | None = None,
    ) -> None:
        """The limits left None are the settings' ($SCONES_MAX_BATCH_SIZE, …, else their defaults).

        `variants`: the models served (default: `model_dir` alone, as AllTraffic); each gets the writer
        `capture_for(variant name)` (default: `capture` for the first one). `control`: the control file whose
        weights every worker follows. `put_metrics(metric data[, namespace])` runs every `metrics_period_s`
        ($SCONES_ENDPOINT_METRICS_S), off the event loop: SageMaker's metrics without a namespace (AWS/SageMaker),
        each variant's quality over its last `window` answers ($SCONES_ROLLOUT_WINDOW) at `threshold`
        ($SCONES_THRESHOLD) with quality.NAMESPACE."""
        if max_batch_size is None:
            max_batch_size = settings.max_batch_size()
        if max_wait_ms is None:
            max_wait_ms = settings.max_wait_ms()
        self.model_dir, self.name, self.capture = Path(model_dir), name, capture
        self.max_body_bytes = settings.max_payload_bytes() if max_body_bytes is None else max_body_bytes
        self.body_timeout_s = settings.body_timeout_s() if body_timeout_s is None else body_timeout_s
        self.capture_block_s = settings.capture_block_s() if capture_block_s is None else capture_block_s
        self.threads = threads
        self.load_error: Exception | None = None
        self.on_load_error: Callable[[], None] = lambda: None
        self.load_first = False  # load during startup, before the socket listens (a deploy joining a port)
        variants = variants or [Variant(PRODUCTION, self.model_dir)]
        self.router = Router(variants)
        self.control = control
        window = settings.rollout_window() if window is None else window
        self.threshold = settings.threshold() if threshold is None else threshold
        self.served: dict[str, Served] = {}
        for i, v in enumerate(variants):
            writer = capture_for(v.name) if capture_for else (capture if i == 0 else None)
            batcher = DynamicBatcher(self._predictor(v.name), max_batch_size, max_wait_ms, expected=lambda: self.active)
            self.served[v.name] = Served(i, v, batcher, writer, window)
        first = next(iter(self.served.values()))
        self.capture, self.batcher = first.capture, first.batcher  # the first variant's (one-model endpoints)
        self.board = board or Board(1, len(variants))  # this worker's counters, beside the other workers'
        self.put_metrics = put_metrics
        self.metrics_period_s = settings.endpoint_metrics_s() if metrics_period_s is None else metrics_period_s
        self.metric_failures = 0
        self.active = 0  # requests accepted and not yet answered: the batcher waits only for these
        self.requests = 0
        self.errors = 0
        self.refused = 0  # answered 503: the capture buffer stayed full (block policy)
        self.timeouts = 0  # answered 408: the body did not arrive in time
        self._big_decodes: asyncio.Semaphore | None = None
        self._big_active = 0
        self._tasks: list[asyncio.Task] = []
        self._shadow_tasks: set[asyncio.Task] = set()  # held until done (the loop keeps weak references only)

    # --- lifecycle ---------------------------------------------------------------------------------
    @property
    def model(self) -> inference.Model | None:
        """The first variant's model once every variant's is loaded (None before)."""
        served = list(self.served.values())
        return served[0].model if all(s.model is not None for s in served) else None

    def _predictor(self, name: str):
        def predict(images):
            model = self.served[name].model
            assert model is not None
            return inference.predict_fn(images, model)

        return predict

    def _writers(self) -> list[CaptureWriter]:
        return [s.capture for s in self.served.values() if s.capture is not None]

    def _load(self) -> None:
        try:
            for served in self.served.values():
                served.model = inference.load(served.variant.model_dir, self.threads)
        except Exception as exc:
            self.load_error = exc
            print(f"endpoint {self.name}: cannot load the model: {exc}", file=sys.stderr, flush=True)
            self.board.note(f"cannot load the model: {exc}")
            self.on_load_error()
            return
        self.board.set(pid=os.getpid(), loaded=1)

    def publish(self) -> None:
        """This worker's counters onto the shared board (a few stores; /_scones/stats sums the board)."""
        writers = self._writers()
        self.board.set(
            requests=self.requests,
            errors=self.errors,
            batches=sum(s.batcher.batches for s in self.served.values()),
            batched_images=sum(s.batcher.images for s in self.served.values()),
            captured=sum(w.captured for w in writers),
            written=sum(w.written for w in writers),
            files=sum(w.files for w in writers),
            dropped=sum(w.dropped for w in writers),
            spooled=sum(w.spooled for w in writers),
            unsent=sum(w.unsent for w in writers),
            refused=self.refused,
            timeouts=self.timeouts,
        )
        if self.board.variants >= len(self.served):
            for s in self.served.values():
                self.board.set_variant(s.index, requests=s.requests, errors5xx=s.errors5xx, errors4xx=s.errors4xx)

    def _flush(self, final: bool = False) -> None:
        for writer in self._writers():
            writer.flush(final=final)
        self.publish()

    async def startup(self) -> None:
        for served in self.served.values():
            await served.batcher.start()
        if self.load_first:
            await asyncio.get_running_loop().run_in_executor(None, self._load)
        else:
            threading.Thread(target=self._load, daemon=True).start()  # /ping answers 503 meanwhile
        if self._writers():
            self._tasks.append(asyncio.create_task(self._flush_when_due()))
        if self.control is not None:
            self.router.follow(self.control)
            self._tasks.append(asyncio.create_task(self._follow_control()))
        if self.put_metrics is not None and self.metrics_period_s > 0:
            self._tasks.append(asyncio.create_task(self._put_metrics_when_due()))

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        loop = asyncio.get_running_loop()
        if self._writers():
            await loop.run_in_executor(None, lambda: self._flush(final=True))
        if self.put_metrics is not None and self.metrics_period_s > 0:
            await loop.run_in_executor(None, self._put_metrics)
        for served in self.served.values():
            await served.batcher.stop()

    async def _flush_when_due(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.25)
            if any(w.due() for w in self._writers()):
                await loop.run_in_executor(None, self._flush)

    async def _follow_control(self) -> None:
        """The weights a rollout writes to the control file: every worker follows within POLL_S."""
        while True:
            await asyncio.sleep(POLL_S)
            self.router.follow(self.control)

    def _put_metrics(self) -> None:
        now = datetime.now(UTC)
        reference = self.served[PRODUCTION].recent if PRODUCTION in self.served else None
        data, scones = [], []
        for s in self.served.values():
            answered = s.metric_data(self.name, now)  # nothing when the variant had no request this period
            data += answered
            if answered:
                scones += quality.metric_data(self.name, s.variant.name, s.recent, reference, self.threshold, now)
        for namespace, found in ((None, data), (quality.NAMESPACE, scones)):
            for i in range(0, len(found), 20):  # PutMetricData's limit per call, kept small
                try:
                    self.put_metrics(found[i : i + 20], *([namespace] if namespace else []))
                except Exception as exc:  # metrics are best effort: the answers go on
                    self.metric_failures += 1
                    if self.metric_failures in (1, 10, 100):
                        print(f"endpoint {self.name}: cannot put metrics ({exc})", file=sys.stderr, flush=True)

    async def _put_metrics_when_due(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = time.monotonic() + self.metrics_period_s
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += self.metrics_period_s
            await loop.run_in_executor(None, self._put_metrics)

    # --- ASGI --------------------------------------------------------------------------------------
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if path == "/ping" and method in ("GET", "HEAD"):
            ready = self.model is not None and self.board.all_loaded()  # every worker can answer
            await self._respond(send, 200 if ready else 503, b"")
        elif path == "/invocations" and method == "POST":
            await self._invoke(scope, receive, send, runtime_api=False)
        elif path.startswith("/endpoints/") and path.endswith("/invocations") and method == "POST":
            name = path[len("/endpoints/") : -len("/invocations")]
            if name != self.name:
                message = f"Endpoint {name} not found: this server serves the endpoint {self.name}"
                await self._respond(
                    send,
                    404,
                    json.dumps({"message": message}).encode(),
                    [*JSON_HEADERS, (b"x-amzn-errortype", b"ValidationError")],
                )
                return
            await self._invoke(scope, receive, send, runtime_api=True)
        elif path == "/_scones/stats" and method == "GET":
            await self._respond(send, 200, json.dumps(self.stats()).encode(), JSON_HEADERS)
        else:
            await self._respond(send, 404, json.dumps({"message": f"no route {method} {path}"}).encode(), JSON_HEADERS)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                if self.load_first and self.load_error is not None:  # never listen: the old server keeps serving
                    await send({"type": "lifespan.startup.failed", "message": str(self.load_error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _read_body(self, scope, receive) -> bytes:
        """The whole body, or PayloadTooLargeError once it passes the limit. An oversized body is still read
        (and dropped) up to 16× the limit so that the client, which sends before it reads, gets the 413.
        A body not complete within body_timeout_s ($SCONES_BODY_TIMEOUT_S) is a 408: a slow client holds a
        connection and its partial body for that long at most."""
        chunks, size, more = [], 0, True
        deadline = asyncio.get_running_loop().time() + self.body_timeout_s
        while more:
            try:
                message = await asyncio.wait_for(receive(), deadline - asyncio.get_running_loop().time())
            except TimeoutError:
                self.timeouts += 1
                raise RequestTimeoutError(
                    f"the request body did not arrive within {self.body_timeout_s:g} s (SCONES_BODY_TIMEOUT_S)"
                ) from None
            chunk, more = message.get("body", b""), message.get("more_body", False)
            size += len(chunk)
            if size <= self.max_body_bytes:
                chunks.append(chunk)
            elif not more or size > 16 * self.max_body_bytes:
                raise PayloadTooLargeError(
                    f"body of {size}{'+' if more else ''} bytes exceeds the limit of {self.max_body_bytes} bytes "
                    f"({inference.MAX_PAYLOAD_ENV}; a batch body counts whole: send fewer images per request)"
                )
        return b"".join(chunks)

    async def _invoke(self, scope, receive, send, runtime_api: bool) -> None:
        self.requests += 1
        self.active += 1
        try:
            await self._answer(scope, receive, send, runtime_api)
        finally:
            self.active -= 1

    @staticmethod
    def _headers(scope) -> tuple[str, str | None, str | None, str | None]:
        content_type, accept, target, inference_id = "", None, None, None
        for key, value in scope["headers"]:
            key = key.lower()
            if key == b"content-type":
                content_type = value.decode("latin-1")
            elif key == b"accept":
                accept = value.decode("latin-1")
            elif key == TARGET_HEADER:
                target = value.decode("latin-1")
            elif key == INFERENCE_ID_HEADER:
                inference_id = value.decode("latin-1")[:64]  # SageMaker's limit
        return content_type, accept, target, inference_id

    async def _answer(self, scope, receive, send, runtime_api: bool) -> None:
        content_type, accept, target, inference_id = self._headers(scope)
        served: Served | None = None
        try:
            body = await self._read_body(scope, receive)
            if self.model is None:
                await self._respond(
                    send,
                    503,
                    json.dumps({"message": "the model is still loading"}).encode(),
                    [*JSON_HEADERS, (b"x-amzn-errortype", b"ServiceUnavailable")],
                )
                return
            try:
                served = self.served[self.router.pick(target)]
            except KeyError:
                raise UnknownVariantError(
                    f"TargetVariant {target} is not a production variant of endpoint {self.name} "
                    f"(it has {', '.join(n for n, s in self.served.items() if not s.variant.shadow)})"
                ) from None
            inference.check_accept(accept)  # refuse a bad Accept before any work
            size = served.model.size
            computed = time.perf_counter()
            if inference.is_batch(content_type):  # many images, one request, one captured record
                image = None  # a batch is not mirrored to a shadow
                output = await self._answer_batch(served, body, content_type, accept)
                latency_ms = (time.perf_counter() - computed) * 1000
            else:
                if len(body) > BIG_BODY:  # large images decode off the event loop, a few at once
                    image = await self._decode_big(body, content_type, size)
                else:
                    image = inference.decode(body, content_type, size)
                computed = time.perf_counter()
                row = await served.batcher.submit(image)
                latency_ms = (time.perf_counter() - computed) * 1000
                served.recent.add(row)
                output = inference.output_fn(row[None], accept)
        except inference.InferenceError as exc:
            await self._failed(send, served, exc.status_code, str(exc), type(exc).__name__, runtime_api)
            return
        except Exception as exc:
            await self._failed(send, served, 500, f"{type(exc).__name__}: {exc}", "InternalServerError", runtime_api)
            return
        mirrors = self.router.mirror() if self.router.shadows else ()
        if mirrors and inference_id is None:  # the key `scones monitor --compare` pairs the two records on
            inference_id = event_id(os.urandom(16))
        capture = served.capture
        kept = capture is None or not capture.sampled()
        if not kept and not await self._capture(capture, body, content_type, output, latency_ms, inference_id):
            self.refused += 1
            message = (
                f"the capture buffer stayed full ({capture.max_bytes} bytes) for {self.capture_block_s:g} s: "
                f"S3 unreachable? (SCONES_CAPTURE_WHEN_FULL=drop answers and counts the loss instead)"
            )
            await self._failed(send, served, CaptureFullError.status_code, message, "CaptureFullError", runtime_api)
            return
        served.count(200, latency_ms)
        self.publish()  # before the answer: a client that reads the stats next sees its request counted
        await self._respond(send, 200, output, [*JSON_HEADERS, (INVOKED_HEADER, served.variant.name.encode())])
        for name in mirrors:  # after the answer: off its path
            shadow = self.served[name]
            if shadow.model is not None and image is not None:  # a batch body is not mirrored
                task = asyncio.create_task(self._shadow(shadow, body, content_type, image, size, inference_id))
                self._shadow_tasks.add(task)
                task.add_done_callback(self._shadow_tasks.discard)

    async def _failed(self, send, served: Served | None, status: int, message: str, error: str, runtime_api: bool):
        self.errors += 1
        if served is not None:
            served.count(status)
        self.publish()
        await self._error(send, status, message, error, runtime_api)

    async def _shadow(self, shadow: Served, body: bytes, content_type: str, image, size, inference_id=None) -> None:
        """A mirrored request: the shadow's answer is captured (its own prefix, production's inferenceId) and
        counted, never sent."""
        try:
            if shadow.model.size != size:
                image = inference.decode(body, content_type, shadow.model.size)
            computed = time.perf_counter()
            row = await shadow.batcher.submit(image)
            latency_ms = (time.perf_counter() - computed) * 1000
            shadow.recent.add(row)
            output = inference.output_fn(row[None], None)
        except Exception:
            shadow.count(500)
            return
        shadow.count(200, latency_ms)
        writer = shadow.capture
        mirrored = writer is not None and writer.sampled() and writer.room(body, output)  # never waits
        if mirrored and writer.add(body, content_type, output, latency_ms, inference_id):
            asyncio.get_running_loop().run_in_executor(None, self._flush)

    async def _answer_batch(self, served: Served, body: bytes, content_type: str, accept: str | None) -> bytes:
        """A batch body: decoded off the event loop (as a big body is), its images queued to the variant's dynamic
        batcher together, answered as one list per image."""
        images = await self._decode_big(body, content_type, served.model.size, inference.decode_batch)
        rows = np.stack(await asyncio.gather(*(served.batcher.submit(image) for image in images)))
        served.recent.add(rows)
        return inference.output_fn(rows.view(inference.Batch), accept)

    async def _decode_big(self, body: bytes, content_type: str, size=None, decode=inference.decode):
        if self._big_decodes is None:
            self._big_decodes = asyncio.Semaphore(BIG_DECODES)
        loop = asyncio.get_running_loop()
        async with self._big_decodes:
            self._big_active += 1
            try:
                size = size or self.model.size
                return await loop.run_in_executor(None, decode, body, content_type, size)
            finally:
                self._big_active -= 1
                if self._big_active == 0:  # the last big decode: give its memory back
                    loop.run_in_executor(None, trim_memory)

    async def _capture(
        self,
        capture: CaptureWriter,
        body: bytes,
        content_type: str,
        output: bytes,
        latency_ms: float,
        inference_id: str | None = None,
    ) -> bool:
        """Buffer the record; False when the block policy waited capture_block_s for room in vain."""
        loop = asyncio.get_running_loop()
        if not capture.room(body, output) and capture.when_full == "block":
            deadline = loop.time() + self.capture_block_s
            while not capture.room(body, output):
                if loop.time() >= deadline:
                    return False
                if not capture.flushing():
                    loop.run_in_executor(None, self._flush)
                await asyncio.sleep(0.05)
        if capture.add(body, content_type, output, latency_ms, inference_id):
            loop.run_in_executor(None, self._flush)
        return True

    async def _error(self, send, status: int, message: str, error: str, runtime_api: bool) -> None:
        if runtime_api:  # as SageMaker's runtime reports a model's error: boto3 raises ModelError
            body = {
                "ErrorCode": "CLIENT_ERROR_FROM_MODEL" if status < 500 else "SERVER_ERROR_FROM_MODEL",
                "OriginalStatusCode": status,
                "OriginalMessage": message,
                "message": f"Received {'client' if status < 500 else 'server'} error ({status}) from primary "
                f'with message "{message}"',
            }
            headers = [*JSON_HEADERS, (b"x-amzn-errortype", b"ModelError")]
        else:
            body, headers = {"error": error, "message": message}, JSON_HEADERS
        await self._respond(send, status, json.dumps(body).encode(), headers)

    @staticmethod
    async def _respond(send, status: int, body: bytes, headers=()) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def stats(self) -> dict:
        """Every worker's counters summed (this worker's own are published first)."""
        self.publish()
        board, capture = self.board, self.capture
        variants = [
            {
                "name": s.variant.name,
                "model_uri": s.variant.model_uri or str(s.variant.model_dir),
                "weight": self.router.variants[s.variant.name].weight,
                "shadow_percent": self.router.variants[s.variant.name].shadow_percent,
                "requests": board.variant_total(s.index, "requests") if board.variants > s.index else s.requests,
                "errors5xx": board.variant_total(s.index, "errors5xx") if board.variants > s.index else s.errors5xx,
                "errors4xx": board.variant_total(s.index, "errors4xx") if board.variants > s.index else s.errors4xx,
            }
            for s in self.served.values()
        ]
        batches, images = board.total("batches"), board.total("batched_images")
        captured, written = board.total("captured"), board.total("written")
        return {
            "name": self.name,
            "model_loaded": self.model is not None and board.all_loaded(),
            "workers": board.workers,
            "worker_pids": [int(p) for p in board.column("pid")],
            "requests": board.total("requests"),
            "requests_per_worker": [int(n) for n in board.column("requests")],
            "errors": board.total("errors"),
            "batches": batches,
            "batched_images": images,
            "mean_batch_size": images / batches if batches else 0.0,
            "capture": capture is not None,
            "captured": captured,
            "capture_written": written,
            "capture_pending": captured - written,
            "capture_files": board.total("files"),
            # answered but not captured, by reason; refused (503) and timeouts (408) were not answered
            "capture_lost": {
                "dropped_full": board.total("dropped"),
                "unsent": board.total("unsent"),
                "killed_workers": board.total("lost_killed"),
            },
            "capture_spooled": board.total("spooled"),
            "capture_refused_full": board.total("refused"),
            "body_timeouts": board.total("timeouts"),
            "variants": variants,
        }
