"""The model server: SageMaker's container contract and runtime API on one ASGI app, served by uvicorn.

    GET  /ping                             200 once the model is loaded, 503 before
    POST /invocations                      the container contract (what SageMaker's front end calls)
    POST /endpoints/{name}/invocations     the runtime API, so boto3's sagemaker-runtime.invoke_endpoint works
                                           through AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME
    GET  /_scones/stats                    counters (requests, batches, captured and written records)

Requests are decoded on arrival, grouped by the dynamic batcher, answered as a JSON list of probabilities
and captured (sampled) in SageMaker's format. SIGTERM: uvicorn finishes in-flight requests, then the
capture buffer is flushed.

    python -m services.endpoint --model MODEL_DIR [--name scones-endpoint] [--host 127.0.0.1] [--port 8080]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

from . import inference
from .batching import DynamicBatcher
from .capture import CaptureWriter

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
    ) -> None:
        self.model_dir, self.name, self.capture = Path(model_dir), name, capture
        self.max_body_bytes = max_body_bytes
        self.model: inference.Model | None = None
        self.load_error: Exception | None = None
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
            self.model = inference.model_fn(self.model_dir)
        except Exception as exc:
            self.load_error = exc
            print(f"endpoint {self.name}: cannot load the model: {exc}", file=sys.stderr, flush=True)

    async def startup(self) -> None:
        await self.batcher.start()
        threading.Thread(target=self._load, daemon=True).start()  # /ping answers 503 meanwhile
        if self.capture is not None:
            self._tasks.append(asyncio.create_task(self._flush_when_due()))

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.capture is not None:
            await asyncio.get_running_loop().run_in_executor(None, lambda: self.capture.flush(final=True))
        await self.batcher.stop()

    async def _flush_when_due(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.25)
            if self.capture.due():
                await loop.run_in_executor(None, self.capture.flush)

    # --- ASGI --------------------------------------------------------------------------------------
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if path == "/ping" and method in ("GET", "HEAD"):
            await self._respond(send, 200 if self.model is not None else 503, b"")
        elif path == "/invocations" and method == "POST":
            await self._invoke(scope, receive, send, runtime_api=False)
        elif path.startswith("/endpoints/") and path.endswith("/invocations") and method == "POST":
            name = path[len("/endpoints/") : -len("/invocations")]
            if name != self.name:
                message = f"Endpoint {name} not found (this server serves {self.name})"
                await self._respond(
                    send,
                    400,
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

    async def _answer(self, scope, receive, send, runtime_api: bool) -> None:
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        content_type = headers.get("content-type", "")
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
            inference.check_accept(headers.get("accept"))  # refuse a bad Accept before any work
            if len(body) > 65536:  # large images decode off the event loop
                image = await asyncio.get_running_loop().run_in_executor(
                    None, inference.decode, body, content_type, self.model.size
                )
            else:
                image = inference.decode(body, content_type, self.model.size)
            row = await self.batcher.submit(image)
            output = inference.output_fn(row[None], headers.get("accept"))
        except inference.InferenceError as exc:
            self.errors += 1
            await self._error(send, exc.status_code, str(exc), type(exc).__name__, runtime_api)
            return
        except Exception as exc:
            self.errors += 1
            await self._error(send, 500, f"{type(exc).__name__}: {exc}", "InternalServerError", runtime_api)
            return
        if self.capture is not None and self.capture.sampled() and self.capture.add(body, content_type, output):
            asyncio.get_running_loop().run_in_executor(None, self.capture.flush)
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
        capture = self.capture
        return {
            "name": self.name,
            "model_loaded": self.model is not None,
            "requests": self.requests,
            "errors": self.errors,
            "batches": self.batcher.batches,
            "batched_images": self.batcher.images,
            "mean_batch_size": self.batcher.images / self.batcher.batches if self.batcher.batches else 0.0,
            "captured": capture.captured if capture else 0,
            "capture_written": capture.written if capture else 0,
            "capture_pending": capture.pending() if capture else 0,
            "capture_files": capture.files if capture else 0,
        }


def s3_put(bucket: str):
    """The capture writer's uploader: through the project's client factory (AWS_ENDPOINT_URL picks the cloud)."""
    from scones.core import aws

    s3 = aws.client("s3")

    def put(key: str, body: bytes) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/jsonl")

    return put


def serve(app: EndpointApp, host: str, port: int, record_path: Path | None = None, source: str | None = None) -> None:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))  # bound before the record is written: port 0 picks a free one
    port = sock.getsockname()[1]
    url = f"http://{host}:{port}"
    if record_path is not None:
        record_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = record_path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "url": url,
                    "port": port,
                    "name": app.name,
                    "model_dir": str(app.model_dir),
                    "model_uri": source or str(app.model_dir),
                    "started": time.time(),
                }
            )
        )
        os.replace(tmp, record_path)
    print(f"endpoint {app.name} listening on {url} (model {app.model_dir})", flush=True)
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level="warning",
        access_log=False,
        loop="auto",
        http="auto",
        timeout_graceful_shutdown=30,
        backlog=2048,
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        if record_path is not None:
            try:
                if json.loads(record_path.read_text()).get("pid") == os.getpid():
                    record_path.unlink()
            except (OSError, ValueError):
                pass
        print(f"endpoint {app.name} stopped; {app.stats()}", flush=True)


def main(argv: list[str] | None = None) -> None:
    from scones.core import settings

    p = argparse.ArgumentParser(
        prog="python -m services.endpoint", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", type=Path, required=True, help="an unpacked model folder (model.onnx, labels.json, …)")
    p.add_argument("--name", default=settings.endpoint_name())
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=settings.endpoint_port())
    p.add_argument("--record", type=Path, default=None, help="write pid and url here once listening")
    p.add_argument("--source", default=None, help="where the model came from (an s3:// URI), for the record")
    p.add_argument("--no-capture", action="store_true")
    args = p.parse_args(argv)
    try:
        inference.check_model_dir(args.model)
        capture = None
        if not args.no_capture:
            capture = CaptureWriter(
                s3_put(settings.capture_bucket()),
                args.name,
                prefix=settings.capture_prefix(),
                percent=settings.capture_percent(),
                fallback_dir=settings.state_dir() / "capture-unsent",
            )
        app = EndpointApp(
            args.model,
            args.name,
            capture,
            settings.max_batch_size(),
            settings.max_wait_ms(),
            settings.max_payload_bytes(),
        )
        serve(app, args.host, args.port, args.record, args.source)
    except (inference.ModelLoadError, settings.SettingsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
