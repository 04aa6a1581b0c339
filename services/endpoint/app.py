"""The endpoint's ASGI app: SageMaker's container contract and runtime API, one worker's requests.

    GET  /ping                             200 once the model is loaded (by every worker), 503 before
    POST /invocations                      the container contract (what SageMaker's front end calls)
    POST /endpoints/{name}/invocations     the runtime API, so boto3's sagemaker-runtime.invoke_endpoint works
                                           through AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME
    GET  /_scones/stats                    counters (requests, batches, captured and written records), summed
                                           over every worker from the board (board.py)

Requests are decoded on arrival, grouped by the dynamic batcher (batching.py), answered as a JSON list of
probabilities by the serving handlers (inference.py) and captured (sampled) in SageMaker's format
(capture.py). A batch body (application/json list of base64 images, or application/x-npy) is one request:
its images join the dynamic batcher together, the answer is a list per image, and capture keeps one record
for it, as SageMaker's data capture does. The model loads on a thread after startup; shutdown flushes the
capture buffer. The processes that run this app are supervisor.py's; the command line is cli.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from scones.core import settings

from . import inference
from .batching import DynamicBatcher
from .board import Board
from .capture import VARIANT, CaptureWriter

JSON_HEADERS = [(b"content-type", b"application/json")]


class PayloadTooLargeError(inference.InferenceError):
    status_code = 413


class RequestTimeoutError(inference.InferenceError):
    status_code = 408


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
    ) -> None:
        """The limits left None are the settings' ($SCONES_MAX_BATCH_SIZE, …, else their defaults)."""
        if max_batch_size is None:
            max_batch_size = settings.max_batch_size()
        if max_wait_ms is None:
            max_wait_ms = settings.max_wait_ms()
        self.model_dir, self.name, self.capture = Path(model_dir), name, capture
        self.max_body_bytes = settings.max_payload_bytes() if max_body_bytes is None else max_body_bytes
        self.body_timeout_s = settings.body_timeout_s() if body_timeout_s is None else body_timeout_s
        self.capture_block_s = settings.capture_block_s() if capture_block_s is None else capture_block_s
        self.board = board or Board(1)  # this worker's counters, beside the other workers'
        self.threads = threads
        self.model: inference.Model | None = None
        self.load_error: Exception | None = None
        self.on_load_error: Callable[[], None] = lambda: None
        self.load_first = False  # load during startup, before the socket listens (a deploy joining a port)
        self.batcher = DynamicBatcher(self._predict, max_batch_size, max_wait_ms, expected=lambda: self.active)
        self.active = 0  # requests accepted and not yet answered: the batcher waits only for these
        self.requests = 0
        self.errors = 0
        self.refused = 0  # answered 503: the capture buffer stayed full (block policy)
        self.timeouts = 0  # answered 408: the body did not arrive in time
        self._big_decodes: asyncio.Semaphore | None = None
        self._big_active = 0
        self._tasks: list[asyncio.Task] = []

    # --- lifecycle ---------------------------------------------------------------------------------
    def _predict(self, images):
        assert self.model is not None
        return inference.predict_fn(images, self.model)

    def _load(self) -> None:
        try:
            self.model = inference.load(self.model_dir, self.threads)
        except Exception as exc:
            self.load_error = exc
            print(f"endpoint {self.name}: cannot load the model: {exc}", file=sys.stderr, flush=True)
            self.board.note(f"cannot load the model: {exc}")
            self.on_load_error()
            return
        self.board.set(pid=os.getpid(), loaded=1)

    def publish(self) -> None:
        """This worker's counters onto the shared board (a few stores; /_scones/stats sums the board)."""
        capture = self.capture
        self.board.set(
            requests=self.requests,
            errors=self.errors,
            batches=self.batcher.batches,
            batched_images=self.batcher.images,
            captured=capture.captured if capture else 0,
            written=capture.written if capture else 0,
            files=capture.files if capture else 0,
            dropped=capture.dropped if capture else 0,
            spooled=capture.spooled if capture else 0,
            unsent=capture.unsent if capture else 0,
            refused=self.refused,
            timeouts=self.timeouts,
        )

    def _flush(self, final: bool = False) -> None:
        self.capture.flush(final=final)
        self.publish()

    async def startup(self) -> None:
        await self.batcher.start()
        if self.load_first:
            await asyncio.get_running_loop().run_in_executor(None, self._load)
        else:
            threading.Thread(target=self._load, daemon=True).start()  # /ping answers 503 meanwhile
        if self.capture is not None:
            self._tasks.append(asyncio.create_task(self._flush_when_due()))

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.capture is not None:
            await asyncio.get_running_loop().run_in_executor(None, lambda: self._flush(final=True))
        await self.batcher.stop()

    async def _flush_when_due(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.25)
            if self.capture.due():
                await loop.run_in_executor(None, self._flush)

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
    def _headers(scope) -> tuple[str, str | None]:
        content_type, accept = "", None
        for key, value in scope["headers"]:
            key = key.lower()
            if key == b"content-type":
                content_type = value.decode("latin-1")
            elif key == b"accept":
                accept = value.decode("latin-1")
        return content_type, accept

    async def _answer(self, scope, receive, send, runtime_api: bool) -> None:
        content_type, accept = self._headers(scope)
        extra = [(b"x-amzn-invoked-production-variant", VARIANT.encode())] if runtime_api else []
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
            inference.check_accept(accept)  # refuse a bad Accept before any work
            if inference.is_batch(content_type):  # many images, one request, one captured record
                output = await self._answer_batch(body, content_type, accept)
            else:
                if len(body) > BIG_BODY:  # large images decode off the event loop, a few at once
                    image = await self._decode_big(body, content_type)
                else:
                    image = inference.decode(body, content_type, self.model.size)
                row = await self.batcher.submit(image)
                output = inference.output_fn(row[None], accept)
        except inference.InferenceError as exc:
            self.errors += 1
            self.publish()
            await self._error(send, exc.status_code, str(exc), type(exc).__name__, runtime_api)
            return
        except Exception as exc:
            self.errors += 1
            self.publish()
            await self._error(send, 500, f"{type(exc).__name__}: {exc}", "InternalServerError", runtime_api)
            return
        if self.capture is not None and self.capture.sampled() and not await self._capture(body, content_type, output):
            self.refused += 1
            self.errors += 1
            self.publish()
            message = (
                f"the capture buffer stayed full ({self.capture.max_bytes} bytes) for {self.capture_block_s:g} s: "
                f"S3 unreachable? (SCONES_CAPTURE_WHEN_FULL=drop answers and counts the loss instead)"
            )
            await self._error(send, CaptureFullError.status_code, message, "CaptureFullError", runtime_api)
            return
        self.publish()  # before the answer: a client that reads the stats next sees its request counted
        await self._respond(send, 200, output, [*JSON_HEADERS, *extra])

    async def _answer_batch(self, body: bytes, content_type: str, accept: str | None) -> bytes:
        """A batch body: decoded off the event loop (as a big body is), its images queued to the dynamic batcher
        together, answered as one list per image."""
        images = await self._decode_big(body, content_type, inference.decode_batch)
        rows = await asyncio.gather(*(self.batcher.submit(image) for image in images))
        return inference.output_fn(np.stack(rows).view(inference.Batch), accept)

    async def _decode_big(self, body: bytes, content_type: str, decode=inference.decode):
        if self._big_decodes is None:
            self._big_decodes = asyncio.Semaphore(BIG_DECODES)
        loop = asyncio.get_running_loop()
        async with self._big_decodes:
            self._big_active += 1
            try:
                return await loop.run_in_executor(None, decode, body, content_type, self.model.size)
            finally:
                self._big_active -= 1
                if self._big_active == 0:  # the last big decode: give its memory back
                    loop.run_in_executor(None, trim_memory)

    async def _capture(self, body: bytes, content_type: str, output: bytes) -> bool:
        """Buffer the record; False when the block policy waited capture_block_s for room in vain."""
        capture, loop = self.capture, asyncio.get_running_loop()
        if not capture.room(body, output) and capture.when_full == "block":
            deadline = loop.time() + self.capture_block_s
            while not capture.room(body, output):
                if loop.time() >= deadline:
                    return False
                if not capture.flushing():
                    loop.run_in_executor(None, self._flush)
                await asyncio.sleep(0.05)
        if capture.add(body, content_type, output):
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
        }
