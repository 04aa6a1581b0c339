"""The model server: SageMaker's container contract and runtime API on one ASGI app, served by uvicorn.

    GET  /ping                             200 once the model is loaded, 503 before
    POST /invocations                      the container contract (what SageMaker's front end calls)
    POST /endpoints/{name}/invocations     the runtime API, so boto3's sagemaker-runtime.invoke_endpoint works
                                           through AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME
    GET  /_scones/stats                    counters (requests, batches, captured and written records)

Requests are decoded on arrival, grouped by the dynamic batcher, answered as a JSON list of probabilities
and captured (sampled) in SageMaker's format. `--workers N` runs N such servers as processes sharing the
port (workers.py), each with cores / N onnxruntime threads; /ping answers 200 once every worker has loaded
the model and /_scones/stats sums every worker's counters. SIGTERM: each worker finishes its in-flight
requests, then flushes its capture buffer.

    python -m services.endpoint --model MODEL_DIR [--name scones-endpoint] [--host 127.0.0.1] [--port 8080]
                                [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from . import inference
from .batching import DynamicBatcher
from .capture import CaptureWriter
from .workers import CANNOT_LOAD, Board, claim_port, reuseport_socket, supervise

JSON_HEADERS = [(b"content-type", b"application/json")]
VARIANT = "AllTraffic"


class PayloadTooLargeError(inference.InferenceError):
    status_code = 413


class EndpointApp:
    def __init__(
        self,
        model_dir: Path,
        name: str,
        capture: CaptureWriter | None = None,
        max_batch_size: int = 32,
        max_wait_ms: float = 2.0,
        max_body_bytes: int = 6 * 1024 * 1024,
        board: Board | None = None,
        threads: int | None = None,
    ) -> None:
        self.model_dir, self.name, self.capture = Path(model_dir), name, capture
        self.max_body_bytes = max_body_bytes
        self.board = board or Board(1)  # this worker's counters, beside the other workers'
        self.threads = threads
        self.model: inference.Model | None = None
        self.load_error: Exception | None = None
        self.on_load_error: Callable[[], None] = lambda: None
        self.batcher = DynamicBatcher(self._predict, max_batch_size, max_wait_ms, expected=lambda: self.active)
        self.active = 0  # requests accepted and not yet answered: the batcher waits only for these
        self.requests = 0
        self.errors = 0
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
        )

    def _flush(self, final: bool = False) -> None:
        self.capture.flush(final=final)
        self.publish()

    async def startup(self) -> None:
        await self.batcher.start()
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
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _read_body(self, scope, receive) -> bytes:
        """The whole body, or PayloadTooLargeError once it passes the limit. An oversized body is still read
        (and dropped) up to 16× the limit so that the client, which sends before it reads, gets the 413."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            chunk, more = message.get("body", b""), message.get("more_body", False)
            size += len(chunk)
            if size <= self.max_body_bytes:
                chunks.append(chunk)
            elif not more or size > 16 * self.max_body_bytes:
                raise PayloadTooLargeError(
                    f"body of {size}{'+' if more else ''} bytes exceeds the limit of {self.max_body_bytes} bytes"
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
            if len(body) > 65536:  # large images decode off the event loop
                image = await asyncio.get_running_loop().run_in_executor(
                    None, inference.decode, body, content_type, self.model.size
                )
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
        if self.capture is not None and self.capture.sampled() and self.capture.add(body, content_type, output):
            asyncio.get_running_loop().run_in_executor(None, self._flush)
        self.publish()  # before the answer: a client that reads the stats next sees its request counted
        await self._respond(send, 200, output, [*JSON_HEADERS, *extra])

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
        }


def s3_put(bucket: str):
    """The capture writer's uploader: through the project's client factory (AWS_ENDPOINT_URL picks the cloud)."""
    from scones.core import aws

    s3 = aws.client("s3")

    def put(key: str, body: bytes) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/jsonl")

    return put


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def run_uvicorn(app: EndpointApp, sock: socket.socket) -> int:
    """Serve on `sock` until SIGTERM/SIGINT (graceful: requests finish, capture flushes); CANNOT_LOAD when
    the model could not be loaded, else 0."""
    import uvicorn

    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level="warning",
        access_log=False,
        loop="auto",
        http="auto",
        timeout_graceful_shutdown=30,
        backlog=2048,
        proxy_headers=False,  # no proxy in front: skip its middleware on every request
        server_header=False,
    )
    server = uvicorn.Server(config)

    def stop(*_args) -> None:
        server.should_exit = True

    app.on_load_error = stop
    # Until uvicorn installs its own handlers (and again when it re-raises the signal after its graceful
    # shutdown, with the handler it found) a stop signal just asks the server to stop.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.run(sockets=[sock])
    return CANNOT_LOAD if app.load_error is not None else 0


def serve(
    build: Callable[[Board], EndpointApp],
    host: str,
    port: int,
    workers: int = 1,
    record_path: Path | None = None,
    about: dict | None = None,
) -> int:
    """Run `workers` servers on host:port, each made by `build(board)`; returns the exit status.

    One worker serves in this process. Several: this process holds the port (bound, not listening, so
    port 0 resolves once) and supervises worker processes that each listen on it with SO_REUSEPORT."""
    about = about or {}
    board = Board(workers)
    sock = claim_port(host, port, shared=workers > 1)  # bound before the record is written: 0 picks a free port
    port = sock.getsockname()[1]
    url = f"http://{host}:{port}"
    if record_path is not None:
        record_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = record_path.with_suffix(".tmp")
        record = {"pid": os.getpid(), "url": url, "port": port, "workers": workers, "started": time.time()}
        tmp.write_text(json.dumps({**record, **about}))
        os.replace(tmp, record_path)
    plural = "s" if workers > 1 else ""
    print(f"endpoint {about.get('name', '')} listening on {url} with {workers} worker{plural} {about}", flush=True)

    def worker(slot: int) -> None:
        sock.close()  # the supervisor's: never listening
        board.slot = slot
        board.table[slot] = 0  # a restarted worker is not loaded until it has loaded
        app = build(board)
        code = run_uvicorn(app, reuseport_socket(host, port))
        print(f"worker {slot} (pid {os.getpid()}) stopped after {app.requests} requests", flush=True)
        sys.exit(code)

    try:
        if workers == 1:
            code = run_uvicorn(build(board), sock)
        else:
            code = supervise(workers, worker, log=lambda m: print(m, flush=True))
    finally:
        if record_path is not None:
            try:
                if json.loads(record_path.read_text()).get("pid") == os.getpid():
                    record_path.unlink()
            except (OSError, ValueError):
                pass
        totals = {name: board.total(name) for name in ("requests", "errors", "captured", "written", "files")}
        print(f"endpoint stopped; {totals}", flush=True)
        if board.read_note():
            print(f"error: {board.read_note()}", file=sys.stderr, flush=True)
    return code


def main(argv: list[str] | None = None) -> None:
    from scones.core import settings

    p = argparse.ArgumentParser(
        prog="python -m services.endpoint", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", type=Path, required=True, help="an unpacked model folder (model.onnx, labels.json, …)")
    p.add_argument("--name", default=settings.endpoint_name())
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=settings.endpoint_port())
    p.add_argument(
        "--workers", type=int, default=None, help="server processes (default $SCONES_ENDPOINT_WORKERS or one per core)"
    )
    p.add_argument("--record", type=Path, default=None, help="write pid and url here once listening")
    p.add_argument("--source", default=None, help="where the model came from (an s3:// URI), for the record")
    p.add_argument("--no-capture", action="store_true")
    args = p.parse_args(argv)
    try:
        inference.check_model_dir(args.model)
        workers = args.workers if args.workers is not None else settings.endpoint_workers()
        if not 0 <= workers <= 64:
            raise ValueError(f"--workers must be in 0..64 (0: one per core), got {workers}")
        workers = workers or cores()
        threads = settings.ort_threads() or max(1, cores() // workers)
        bucket, prefix, percent = settings.capture_bucket(), settings.capture_prefix(), settings.capture_percent()
        unsent = settings.state_dir() / "capture-unsent"
        max_batch, max_wait, max_body = settings.max_batch_size(), settings.max_wait_ms(), settings.max_payload_bytes()

        def build(board: Board) -> EndpointApp:  # in the worker: its boto3 client is its own
            capture = None
            if not args.no_capture:
                capture = CaptureWriter(s3_put(bucket), args.name, prefix=prefix, percent=percent, fallback_dir=unsent)
            return EndpointApp(args.model, args.name, capture, max_batch, max_wait, max_body, board, threads)

        about = {"name": args.name, "model_dir": str(args.model), "model_uri": args.source or str(args.model)}
        code = serve(build, args.host, args.port, workers, args.record, about)
    except (inference.ModelLoadError, settings.SettingsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    sys.exit(code)
