"""`scones endpoint serve|start|stop|status|invoke`: the local model server, like `scones up` for the cloud."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from scones import models, workflow
from scones.core import aws, service, settings, target
from scones.core.errors import SconesError, UsageError
from scones.core.files import write_atomic
from services.endpoint import variants as routing

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


def orphan_workers(port: int) -> list[int]:
    """Endpoint processes still listening on `port` (workers whose supervisor is gone): the kernel's table of
    listening sockets (/proc/net/tcp), mapped to pids through /proc/*/fd, as psutil reads them."""
    import psutil

    try:
        found = {
            c.pid
            for c in psutil.net_connections(kind="tcp")
            if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid
        }
    except psutil.AccessDenied:
        return []
    return sorted(pid for pid in found if service.runs_module(pid, MODULE))


def _stop_pids(pids: list[int], timeout_s: float) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # graceful: requests finish, capture flushes
    deadline = time.monotonic() + timeout_s
    while any(service.alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def stop(name: str, timeout_s: float = 30.0, log=print) -> bool:
    port = record(name).get("port")
    pid = _service(name).stop(timeout_s)  # SIGTERM: in-flight requests finish, capture is flushed
    orphans = orphan_workers(port) if port and not pid else []  # the supervisor was killed, its workers not
    if orphans:
        _stop_pids(orphans, timeout_s)
    if target.is_active():
        target.refresh()
    if orphans:
        log(f"endpoint {name}: its supervisor was gone; stopped {len(orphans)} orphan workers (pids {orphans})")
    else:
        log(f"endpoint {name} stopped (pid {pid})" if pid else f"endpoint {name} is not running")
    return pid is not None or bool(orphans)


def probe_image(size: tuple[int, int]) -> bytes:
    """A PNG of the model's input size: what a switch sends the new model before it serves."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (128, 96, 64)).save(buffer, "PNG")
    return buffer.getvalue()


def check_answers(url: str, model_dir: Path, timeout_s: float = 30.0) -> None:
    """/ping is 200 and a probe image gets one probability per label; else EndpointError saying what failed."""
    labels = models.labels_of(model_dir)
    size = json.loads((model_dir / "config.json").read_text())["preprocessing"]["input_size"]
    request = urllib.request.Request(
        url + "/invocations", data=probe_image((size[1], size[0])), headers={"Content-Type": "image/png"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            answer = json.loads(response.read())
    except (OSError, ValueError) as exc:
        raise EndpointError(f"the probe image got no answer ({exc})") from None
    if not isinstance(answer, list) or len(answer) != len(labels):
        raise EndpointError(f"the probe image got {str(answer)[:80]}, not {len(labels)} probabilities")


def _candidate(uri: str, model_dir: Path, name: str, host: str | None, timeout_s: float) -> None:
    """Serve the new model alone on a free port, check /ping and a probe image, stop it; EndpointError if not."""
    path = settings.state_dir() / f"candidate-{name}.json"  # not endpoint-*.json: not an endpoint of its own
    log_path = settings.state_dir() / f"endpoint-{name}.log"
    trial = service.Service(f"the new model for endpoint {name}", MODULE, path, log_path, _probe, EndpointError)
    args = [*server_args(model_dir, name, 0, path, uri, host, workers=1), "--no-capture"]
    try:
        found = trial.start(args, dict(os.environ), timeout_s)
        check_answers(found.url or "", model_dir)
    finally:
        trial.stop()


def _listening(pid: int, port: int) -> int:
    """How many of `pid` and its children listen on `port`."""
    import psutil

    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children()]
    except psutil.NoSuchProcess:
        return 0
    count = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            count += sum(
                1 for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port == port
            )
    return count


def switch(model: str, name: str, timeout_s: float = 60.0, log=print) -> EndpointStatus:
    """Serve `model` as the running endpoint `name` on the same URL, with no request failing meanwhile.

    1. The new model is unpacked and served alone on a free port until /ping and a probe image answer: any
       failure leaves the running endpoint as it is (EndpointError says so, in one line).
    2. A new worker set joins the endpoint's port (SO_REUSEPORT), each worker listening once loaded.
    3. The old set stops gracefully (SIGTERM: it finishes its requests and flushes its capture).
    An endpoint started before servers bound with SO_REUSEPORT is restarted instead (a short gap, said)."""
    old = record(name)
    current = status(name)
    if not current.running:
        return start(model, name, timeout_s=timeout_s, log=log)
    kept = f"endpoint {name} still serves {old.get('model_uri')}"
    host = (current.url or "").split("//")[1].rsplit(":", 1)[0]
    try:
        uri, model_dir = prepare_model(model, name)
        log(f"checking {uri} on a free port before endpoint {name} serves it ...")
        _candidate(uri, model_dir, name, host, timeout_s)
    except SconesError as exc:
        raise EndpointError(f"the new model was refused: {exc}; {kept}", "scones endpoint status") from None
    if not old.get("reuseport"):
        log(f"endpoint {name} predates switches without a gap: restarting it")
        stop(name, log=log)
        return start(uri, name, old.get("port"), timeout_s, log, host, old.get("workers"))
    server = _service(name)
    args = [*server_args(model_dir, name, old["port"], server.record_path, uri, host, old.get("workers")), "--join"]
    ready = _join(name, old, args, kept, timeout_s)
    log(f"endpoint {name} switched to {uri} at {ready.url} (pid {ready.pid}, {ready.workers} workers)")
    return ready


def _join(name: str, old: dict, args: list[str], kept: str, timeout_s: float) -> EndpointStatus:
    """A new worker set (`args`, with --join) listens beside the running one, which then drains and stops."""
    server = _service(name)
    proc = service.spawn(MODULE, args, server.log_path, dict(os.environ))
    deadline = time.monotonic() + timeout_s
    while _listening(proc.pid, old["port"]) < max(1, old.get("workers") or 1):
        if proc.poll() is not None or time.monotonic() > deadline:
            service.stop(proc.pid)
            write_atomic(server.record_path, json.dumps(old))  # the new set wrote its own; the old one serves
            raise EndpointError(
                f"the new worker set did not come up (log: {server.log_path}); {kept}", "scones endpoint status"
            )
        time.sleep(0.1)
    service.stop(old["pid"], timeout_s)  # the old set drains and exits; the new one already serves the port
    return status(name)


def variants(name: str) -> list[routing.Variant]:
    """The variants the running endpoint serves (one AllTraffic for an endpoint started with one model)."""
    found = record(name)
    if found.get("variants_file"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            return routing.read(Path(found["variants_file"])).variants
    if not found.get("model_dir"):
        return []
    return [routing.Variant(routing.PRODUCTION, Path(found["model_dir"]), 1.0, 0.0, found.get("model_uri", ""))]


def serve_variants(name: str, wanted: list[routing.Variant], timeout_s: float = 60.0, log=print) -> EndpointStatus:
    """Serve `wanted` (each with its model, weight, shadow share) as the running endpoint `name`, with no
    request failing meanwhile: every model not served yet answers /ping and a probe image on a free port first,
    then a worker set loading all of them joins the port and the old set drains (as `switch`). Each worker set
    follows its own control file, so the old set never sees the new set's weights."""
    old = record(name)
    current = status(name)
    if not current.running and not _supervisor_alive(current):
        raise EndpointError(f"endpoint {name} is not running", "scones endpoint start")
    routing.check(wanted)
    kept = f"endpoint {name} still serves {', '.join(v.name for v in variants(name))}"
    host = (current.url or "").split("//")[1].rsplit(":", 1)[0]
    served = {str(v.model_dir) for v in variants(name)}
    for v in wanted:
        if str(v.model_dir) in served:
            continue
        try:
            log(f"checking {v.model_uri or v.model_dir} ({v.name}) on a free port before endpoint {name} serves it ...")
            _candidate(v.model_uri or str(v.model_dir), v.model_dir, name, host, timeout_s)
        except SconesError as exc:
            raise EndpointError(f"the new model was refused: {exc}; {kept}", "scones endpoint status") from None
    if not old.get("reuseport"):
        raise EndpointError(f"endpoint {name} predates switches without a gap", f"scones endpoint stop --name {name}")
    control = settings.state_dir() / "endpoints" / name / f"variants-{int(time.time() * 1000)}.json"
    routing.write(control, routing.Control(wanted))
    server = _service(name)
    args = server_args(wanted[0].model_dir, name, old["port"], server.record_path, None, host, old.get("workers"))
    args = [a for a in args if a != "--model" and a != str(wanted[0].model_dir)]
    ready = _join(name, old, [*args, "--variants", str(control), "--join"], kept, timeout_s)
    shown = ", ".join(f"{v.name} ({_share(v)})" for v in wanted)
    log(f"endpoint {name} serves {shown} at {ready.url} (pid {ready.pid}, {ready.workers} workers)")
    return ready


def serving(name: str) -> bool:
    """Whether endpoint `name` has a server to act on: /ping answers 200, or its supervisor still runs."""
    current = status(name)
    return current.running or _supervisor_alive(current)


def _supervisor_alive(current: EndpointStatus) -> bool:
    """/ping did not answer 200 but the endpoint's supervisor still runs: a worker that died is being restarted
    (/ping answers 503 until every worker is back), or the probe's connection was reset by a worker dying at that
    moment (its listener takes connections for a moment after its own were reset: docs/security.md, "A worker
    killed mid-request"). A rollback must still replace that server: the worker may die again."""
    return _service(current.name).runs(current.pid)


def _share(v: routing.Variant) -> str:
    return f"shadow {v.shadow_percent:g}%" if v.shadow else f"weight {v.weight:g}"


def set_weights(name: str, weights: dict[str, float]) -> None:
    """Shift traffic between the variants served now: every worker follows within a tenth of a second."""
    path = record(name).get("variants_file")
    if not path:
        raise EndpointError(f"endpoint {name} serves one model, no variants to weigh", "scones deploy --rollout …")
    control = routing.read(Path(path))
    unknown = set(weights) - {v.name for v in control.variants}
    if unknown:
        raise EndpointError(f"endpoint {name} has no variant {', '.join(sorted(unknown))}", "scones endpoint status")
    for v in control.variants:
        v.weight = weights.get(v.name, v.weight)
    routing.write(Path(path), control)


def note_rollout(name: str, state: dict | None) -> None:
    """Persist a rollout's state in the endpoint's record (atomically): an interrupted rollout is found there."""
    path = settings.endpoint_record_path(name)
    found = record(name)
    if not found:
        return
    if state is None:
        found.pop("rollout", None)
    else:
        found["rollout"] = state
    write_atomic(path, json.dumps(found))


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
