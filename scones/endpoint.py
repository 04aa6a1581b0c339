"""`scones endpoint serve|start|stop|status|invoke`: the local model server, like `scones up` for the cloud."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from scones import models, workflow
from scones.core import aws, service, settings, target
from scones.core.errors import SconesError, UsageError

MODULE = "services.endpoint"


class EndpointError(SconesError):
    """The endpoint could not be started, reached or stopped."""

    next_default = "scones endpoint status"


@dataclass
class EndpointStatus:
    running: bool
    name: str
    url: str | None = None
    pid: int | None = None
    stats: dict | None = None
    detail: str = ""
    workers: int | None = None  # server processes sharing the port


def _probe(url: str) -> tuple[bool, dict | None, str]:
    code, _ = service.get_json(url + "/ping")
    if code != 200:
        return False, None, "loading the model" if code == 503 else "not answering"
    _, stats = service.get_json(url + "/_scones/stats")
    return True, stats, ""


def _service(name: str) -> service.Service:
    log_path = settings.state_dir() / f"endpoint-{name}.log"
    return service.Service(
        f"endpoint {name}", MODULE, settings.endpoint_record_path(name), log_path, _probe, EndpointError
    )


def status(name: str) -> EndpointStatus:
    server = _service(name)
    found = server.status()
    workers = (found.info or {}).get("workers", (server.record() or {}).get("workers"))
    return EndpointStatus(found.running, name, found.url, found.pid, found.info, found.detail, workers)


def prepare_model(model: str | None, name: str) -> tuple[str, Path]:
    """Resolve --model (default: the newest trained model in the bucket) into an unpacked folder."""
    uri = model or models.latest_model_uri(settings.bucket())
    target = settings.state_dir() / "endpoints" / name / f"model-{int(time.time() * 1000)}"
    return uri, models.fetch_model(uri, target).resolve()  # a folder is served where it is


def server_args(
    model_dir: Path,
    name: str,
    port: int | None,
    record: Path | None,
    source: str | None = None,
    host: str | None = None,
    workers: int | None = None,
) -> list[str]:
    port = settings.endpoint_port() if port is None else port
    args = ["--model", str(model_dir), "--name", name, "--port", str(port)] + (["--host", host] if host else [])
    args += ["--workers", str(workers)] if workers is not None else []  # default: $SCONES_ENDPOINT_WORKERS
    return args + (["--record", str(record)] if record else []) + (["--source", source] if source else [])


def start(
    model: str | None,
    name: str,
    port: int | None = None,
    timeout_s: float = 60.0,
    log=print,
    host: str | None = None,
    workers: int | None = None,
) -> EndpointStatus:
    """`host`: the bind address (default 127.0.0.1); LocalStack in Docker passes the Docker bridge address.
    `workers`: server processes sharing the port (default $SCONES_ENDPOINT_WORKERS, else one per core)."""
    current = status(name)
    if current.running:
        log(
            f"endpoint {name} already running at {current.url} (pid {current.pid}); `scones endpoint stop` first "
            f"to serve another model"
        )
        return current
    uri = model or models.latest_model_uri(settings.bucket())  # "no trained model" comes before a taken port
    port = settings.endpoint_port() if port is None else port
    holder = service.port_holder(host or settings.localcloud_host(), port) if port else None
    if holder:  # before the model is downloaded and unpacked
        raise EndpointError(f"port {port} is taken by {holder}", "pass --port 0 (any free port) or stop that process")
    uri, model_dir = prepare_model(uri, name)
    server = _service(name)
    target.current()  # capture goes to the same cloud as everything else: the server inherits this environment
    log(f"starting endpoint {name} with {uri} (log: {server.log_path}) ...")
    args = server_args(model_dir, name, port, server.record_path, uri, host, workers)
    server.start(args, dict(os.environ), timeout_s)
    ready = status(name)
    target.refresh()  # this process's clients now reach the endpoint it started
    log(f"endpoint {name} ready at {ready.url} (pid {ready.pid}, {ready.workers} workers)")
    return ready


def stop(name: str, timeout_s: float = 30.0, log=print) -> bool:
    pid = _service(name).stop(timeout_s)  # SIGTERM: in-flight requests finish, capture is flushed
    if target.is_active():
        target.refresh()
    log(f"endpoint {name} stopped (pid {pid})" if pid else f"endpoint {name} is not running")
    return pid is not None


def record(name: str) -> dict:
    return service.read_record(settings.endpoint_record_path(name)) or {}


def recorded_names() -> list[str]:
    """The endpoints this state dir started (running or not)."""
    return [p.stem.removeprefix("endpoint-") for p in sorted(settings.state_dir().glob("endpoint-*.json"))]


def serve(model: str | None, name: str, port: int | None, workers: int | None = None) -> None:
    """Run the model server in the foreground, in place of this process (Ctrl-C stops it; capture is flushed)."""
    import sys

    uri, model_dir = prepare_model(model, name)
    target.current()
    print(f"serving {uri} as {name} (Ctrl-C stops; capture is flushed)", flush=True)
    args = server_args(model_dir, name, port, settings.endpoint_record_path(name), uri, workers=workers)
    os.execv(sys.executable, [sys.executable, "-m", MODULE, *args])


CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


@dataclass
class Answer:
    label: str
    confidence: float
    probabilities: dict[str, float]


def invoke_file(path: Path, name: str) -> Answer:
    """Send an image file to the endpoint through boto3's sagemaker-runtime, as any client would."""
    import json

    if not path.exists():
        raise UsageError(f"{path}: no such file", "pass the path of a PNG or JPEG image")
    if not path.is_file():
        raise UsageError(f"{path} is not a file", "pass the path of a PNG or JPEG image")
    runtime = aws.client("sagemaker-runtime")
    try:
        response = runtime.invoke_endpoint(
            EndpointName=name,
            ContentType=CONTENT_TYPES.get(path.suffix.lower(), "application/x-image"),
            Accept="application/json",
            Body=path.read_bytes(),
        )
    except runtime.exceptions.ModelError as exc:
        message = exc.response.get("OriginalMessage") or exc.response.get("Error", {}).get("Message") or str(exc)
        raise UsageError(f"the model refused {path.name}: {message}", "send a PNG or JPEG image") from None
    probabilities = json.loads(response["Body"].read())
    model_dir = record(name).get("model_dir")  # a local endpoint knows its labels
    labels = models.labels_of(Path(model_dir)) if model_dir else []
    if len(labels) != len(probabilities):
        labels = [f"class_{i}" for i in range(len(probabilities))]
    label, confidence = workflow.best(probabilities, labels)
    return Answer(label, confidence, dict(zip(labels, probabilities, strict=True)))
