"""`scones endpoint serve|start|stop|status|invoke`: the local model server, like `scones up` for the cloud."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from scones import models
from scones.core import service, settings

MODULE = "services.endpoint"


class EndpointError(RuntimeError):
    """The endpoint could not be started, reached or stopped."""


@dataclass
class EndpointStatus:
    running: bool
    name: str
    url: str | None = None
    pid: int | None = None
    stats: dict | None = None
    detail: str = ""
    workers: int | None = None  # server processes sharing the port


def status(name: str) -> EndpointStatus:
    record = service.read_record(settings.endpoint_record_path(name))
    if record is None:
        return EndpointStatus(False, name, detail="not started")
    code, _ = service.get_json(record["url"] + "/ping")
    if code != 200:
        alive = service.alive(record["pid"])
        detail = ("loading the model" if code == 503 else "not answering") if alive else "stale record: process gone"
        return EndpointStatus(False, name, record["url"], record["pid"], detail=detail, workers=record.get("workers"))
    _, stats = service.get_json(record["url"] + "/_scones/stats")
    workers = (stats or {}).get("workers", record.get("workers"))
    return EndpointStatus(True, name, record["url"], record["pid"], stats, workers=workers)


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
    workers: int | None = None,
) -> list[str]:
    port = settings.endpoint_port() if port is None else port
    args = ["--model", str(model_dir), "--name", name, "--port", str(port)]
    args += ["--workers", str(workers)] if workers is not None else []  # default: $SCONES_ENDPOINT_WORKERS
    return args + (["--record", str(record)] if record else []) + (["--source", source] if source else [])


def start(
    model: str | None,
    name: str,
    port: int | None = None,
    timeout_s: float = 60.0,
    log=print,
    workers: int | None = None,
) -> EndpointStatus:
    current = status(name)
    if current.running:
        log(
            f"endpoint {name} already running at {current.url} (pid {current.pid}); `scones endpoint stop` first "
            f"to serve another model"
        )
        return current
    if current.pid and service.alive(current.pid):
        raise EndpointError(f"endpoint {name} (pid {current.pid}) exists but does not answer; stop it first")
    uri, model_dir = prepare_model(model, name)
    record = settings.endpoint_record_path(name)
    record.unlink(missing_ok=True)
    log_path = settings.state_dir() / f"endpoint-{name}.log"
    settings.apply_target_env()  # capture goes to the same cloud as everything else
    proc = service.spawn(MODULE, server_args(model_dir, name, port, record, uri, workers), log_path, dict(os.environ))
    log(f"starting endpoint {name} with {uri} (log: {log_path}) ...")

    def ready() -> EndpointStatus | None:
        found = status(name)
        return found if found.running and found.pid == proc.pid else None

    found = service.wait_ready(proc, ready, log_path, f"endpoint {name}", timeout_s, EndpointError)
    log(f"endpoint {name} ready at {found.url} (pid {proc.pid}, {found.workers} workers)")
    return found


def stop(name: str, timeout_s: float = 30.0, log=print) -> bool:
    record = service.read_record(settings.endpoint_record_path(name))
    if record is None or not service.runs_module(record["pid"], MODULE):
        settings.endpoint_record_path(name).unlink(missing_ok=True)
        log(f"endpoint {name} is not running")
        return False
    service.stop(record["pid"], timeout_s)  # SIGTERM: in-flight requests finish, capture is flushed
    settings.endpoint_record_path(name).unlink(missing_ok=True)
    log(f"endpoint {name} stopped (pid {record['pid']})")
    return True


def record(name: str) -> dict:
    return service.read_record(settings.endpoint_record_path(name)) or {}


def recorded_names() -> list[str]:
    """The endpoints this state dir started (running or not)."""
    return [p.stem.removeprefix("endpoint-") for p in sorted(settings.state_dir().glob("endpoint-*.json"))]
