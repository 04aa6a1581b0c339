"""LocalStack as a target (`scones up/down/status --stack localstack`): Docker Compose when a Docker engine
answers, else host mode: localstack-core in its own virtual environment (Python >= 3.13), started in the
background on 127.0.0.1 with the docker-free Lambda executor of services/localstack.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from scones import localcloud
from scones.core import aws, service, settings, statedir
from scones.core.errors import NotReadyError, SconesError, UsageError
from scones.core.files import write_atomic

PLUGIN_DIR = settings.ROOT / "services" / "localstack"
REQUIREMENTS = PLUGIN_DIR / "requirements.txt"
MODULE = "localstack.runtime.main"
HEALTH_PATH = "/_localstack/health"
EXECUTOR = "scones"  # services/localstack's entry point name
# Services the workflow and its tests use; LocalStack starts each on first use.
SERVICES = "s3,sqs,sns,iam,sts,cloudwatch,logs,cloudformation,lambda,stepfunctions"
MIN_PYTHON = (3, 13)


class LocalStackError(SconesError):
    """LocalStack could not be installed, started, reached or stopped."""


@dataclass
class Status:
    running: bool
    mode: str = ""  # host | docker
    url: str | None = None
    pid: int | None = None
    health: dict | None = None
    detail: str = ""


# --- finding Python 3.13 and the virtual environment ---------------------------------------------------------
def _version(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = out.stdout.split()
    return (int(parts[0]), int(parts[1])) if out.returncode == 0 and len(parts) == 2 else None


def _pyenv_candidates() -> list[str]:
    roots = []
    if shutil.which("pyenv"):
        found = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=30).stdout.strip()
        if found:
            roots.append(Path(found))
    roots.append(Path.home() / ".pyenv")
    found = []
    for root in roots:
        found += sorted((str(p) for p in root.glob("versions/3.1[3-9]*/bin/python")), reverse=True)
    return found


def find_python(explicit: str | None = None) -> str:
    """A Python >= 3.13: the argument, SCONES_LOCALSTACK_PYTHON, python3.13 on PATH, else pyenv's."""
    wanted = explicit or settings.localstack_python()
    if wanted:
        version = _version(wanted)
        if version is None or version < MIN_PYTHON:
            raise UsageError(
                f"{settings.LOCALSTACK_PYTHON}={wanted} is not a Python >= 3.13 (found {version or 'nothing'})",
                next_step="point it at a python3.13 binary or unset it",
            )
        return wanted
    candidates = [p for p in (shutil.which("python3.13"), shutil.which("python3.14")) if p] + _pyenv_candidates()
    for candidate in candidates:
        version = _version(candidate)
        if version is not None and version >= MIN_PYTHON:
            return candidate
    raise NotReadyError(
        "LocalStack host mode needs Python >= 3.13 (localstack-core does not import on 3.11/3.12) and none was "
        f"found ({settings.LOCALSTACK_PYTHON}, python3.13 on PATH, pyenv)",
        next_step=f"install Python 3.13 (`pyenv install 3.13` or `apt-get install python3.13`) or set "
        f"{settings.LOCALSTACK_PYTHON}",
    )


def _stamp() -> str:
    """What the venv was built from: a change reinstalls it."""
    digest = hashlib.sha256()
    for path in (REQUIREMENTS, PLUGIN_DIR / "pyproject.toml"):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def venv_python(venv: Path | None = None) -> Path:
    return (venv or settings.localstack_venv()) / "bin" / "python"


def ensure_venv(python: str | None = None, log=print) -> Path:
    """Create (or refresh) .venv-localstack: pinned localstack-core + the executor plugin, editable. Idempotent."""
    venv = settings.localstack_venv()
    stamp_file = venv / ".scones-installed"
    if venv_python(venv).exists() and stamp_file.exists() and stamp_file.read_text() == _stamp():
        return venv_python(venv)
    base = find_python(python)
    started = time.perf_counter()
    log(f"creating {venv} with {base} (localstack-core and its pins; about a minute with a cold pip cache) ...")
    steps = [
        [base, "-m", "venv", str(venv)],
        [str(venv_python(venv)), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS), "-e", str(PLUGIN_DIR)],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n  ".join((done.stderr or done.stdout).strip().splitlines()[-8:])
            raise LocalStackError(f"`{' '.join(step[:4])} …` failed ({done.returncode}):\n  {tail}")
    stamp_file.write_text(_stamp())
    log(f"{venv} ready in {time.perf_counter() - started:.0f} s")
    return venv_python(venv)


# --- mode, status --------------------------------------------------------------------------------------------
def mode() -> str:
    """host or docker: SCONES_LOCALSTACK_MODE, else docker when an engine answers."""
    chosen = settings.localstack_mode()
    if chosen == "auto":
        return "docker" if localcloud.docker_engine_answers() else "host"
    return chosen


def health(url: str, timeout_s: float = 1.0) -> dict | None:
    code, body = service.get_json(url + HEALTH_PATH, timeout_s)
    return body if code == 200 and isinstance(body, dict) else None


def _ready(found: dict | None) -> bool:
    services = (found or {}).get("services", {})
    return all(services.get(name) in ("available", "running") for name in ("s3", "lambda", "stepfunctions"))


def status() -> Status:
    record = service.read_record(settings.localstack_record_path())
    if record is None:
        return Status(False, detail="not started (no record in the state dir)")
    found = health(record["url"])
    pid = record.get("pid")
    if found is None:
        alive = bool(pid) and service.alive(pid)
        detail = "process alive but not answering" if alive else "not answering"
        return Status(False, record.get("mode", ""), record["url"], pid, None, detail)
    return Status(True, record.get("mode", ""), record["url"], pid, found)


def require(url: str) -> None:
    """Raise unless LocalStack answers at `url` (a deploy to nothing would end in a connection traceback)."""
    if health(url) is None:
        raise NotReadyError(f"LocalStack does not answer at {url}", next_step="scones up --stack localstack")


def recorded_mode() -> str | None:
    """The mode of the LocalStack this state dir started (deploy binds the endpoint by it)."""
    return (service.read_record(settings.localstack_record_path()) or {}).get("mode")


# --- up / down -----------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((settings.DEFAULT_HOST, 0))
        return sock.getsockname()[1]


def _check_port_free(port: int) -> None:
    with socket.socket() as sock:
        try:
            sock.bind((settings.DEFAULT_HOST, port))
        except OSError:
            raise UsageError(
                f"port {port} on {settings.DEFAULT_HOST} is taken by another program: LocalStack cannot listen there",
                next_step=f"set {settings.LOCALSTACK_PORT} to a free port (0: any) or stop what uses it",
            ) from None


def child_env(port: int, state: Path) -> dict[str, str]:
    """LocalStack's own configuration (its variable names, not ours) for host mode."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(settings.SERVICE_ENDPOINT_PREFIX)}
    env.pop(settings.AWS_ENDPOINT_URL, None)
    env.pop("PYTHONPATH", None)
    env.update(
        {
            "GATEWAY_LISTEN": f"{settings.DEFAULT_HOST}:{port}",
            "LOCALSTACK_HOST": f"{settings.DEFAULT_HOST}:{port}",
            "SERVICES": SERVICES,
            "SKIP_SSL_CERT_DOWNLOAD": "1",  # no internet here; plain HTTP on loopback
            "DISABLE_EVENTS": "1",  # no analytics calls
            "DNS_ADDRESS": "0",  # no DNS server on port 53 (shared machine; not needed without containers)
            "FILESYSTEM_ROOT": str(state / "localstack"),
            "LAMBDA_RUNTIME_EXECUTOR": EXECUTOR,  # services/localstack: warm subprocesses, nothing downloaded
        }
    )
    return env


def up(port: int | None = None, timeout_s: float = 180.0, log=print) -> Status:
    """Start LocalStack in the background unless it already answers; idempotent."""
    if mode() == "docker":
        localcloud.compose("up", "-d", "--wait")
        url = f"http://{settings.DEFAULT_HOST}:4566"
        statedir.ensure()
        _write_record({"mode": "docker", "url": url, "pid": None})
        with aws.pointed_at(url):
            aws.ensure_bucket(settings.bucket())
        return status()
    current = status()
    if current.running:
        log(f"LocalStack already running at {current.url} (pid {current.pid}, {current.mode} mode)")
        return current
    if current.pid and service.alive(current.pid) and service.runs_module(current.pid, MODULE):
        raise LocalStackError(
            f"a LocalStack process (pid {current.pid}) exists but does not answer",
            next_step="scones down --stack localstack",
        )
    port = settings.localstack_port() if port is None else port
    if port:
        _check_port_free(port)  # before the (slow) venv: a taken port fails at once
    python = ensure_venv(log=log)
    port = port or _free_port()
    state = statedir.ensure()
    (state / "localstack").mkdir(parents=True, exist_ok=True)
    settings.localstack_record_path().unlink(missing_ok=True)
    log_path = state / "localstack.log"
    url = f"http://{settings.DEFAULT_HOST}:{port}"
    proc = service.spawn(MODULE, [], log_path, child_env(port, state), python=str(python))
    log(f"starting LocalStack (host mode, Lambda executor {EXECUTOR!r}) on {url} (log: {log_path}) ...")
    started = time.perf_counter()

    def ready() -> bool:
        return _ready(health(url))

    service.wait_ready(proc, ready, log_path, "LocalStack", timeout_s, LocalStackError)
    _write_record({"mode": "host", "url": url, "pid": proc.pid, "log": str(log_path)})
    with aws.pointed_at(url):
        aws.ensure_bucket(settings.bucket())
    log(f"LocalStack ready at {url} in {time.perf_counter() - started:.1f} s (pid {proc.pid})")
    return status()


def _write_record(record: dict) -> None:
    import json

    path = settings.localstack_record_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record))


def down(timeout_s: float = 20.0, log=print) -> bool:
    """Stop LocalStack (and its Lambda workers: same process group). Returns whether anything was running."""
    record = service.read_record(settings.localstack_record_path())
    in_docker = record.get("mode") == "docker" if record is not None else mode() == "docker"
    if in_docker:
        localcloud.compose("down", "-v")
        settings.localstack_record_path().unlink(missing_ok=True)
        return True
    if record is None:
        log("LocalStack is not running")
        return False
    pid = record.get("pid")
    settings.localstack_record_path().unlink(missing_ok=True)
    if not pid or not service.runs_module(pid, MODULE):
        log("LocalStack was not running (removed a stale record)")
        return False
    service.stop(pid, timeout_s)
    log(f"LocalStack stopped (pid {pid})")
    return True


def describe(found: Status) -> str:
    if not found.running:
        return f"LocalStack: not running ({found.detail})"
    version = (found.health or {}).get("version", "?")
    where = f"pid {found.pid}, " if found.pid else ""
    return f"LocalStack: running at {found.url} ({where}{found.mode} mode, version {version})"


# --- where LocalStack's Lambdas reach the model endpoint --------------------------------------------------------
def docker_bridge_address() -> str:
    """The host's address on Docker's default bridge: what host.docker.internal:host-gateway resolves to."""
    fmt = "{{range .IPAM.Config}}{{.Gateway}}{{end}}"
    done = subprocess.run(["docker", "network", "inspect", "bridge", "--format", fmt], capture_output=True, text=True)
    address = done.stdout.strip()
    if done.returncode != 0 or not address:
        raise LocalStackError(
            "cannot find the Docker bridge address (`docker network inspect bridge`) for the endpoint to bind",
            next_step=f"check `docker info`, or run LocalStack in host mode: {settings.LOCALSTACK_MODE}=host",
        )
    return address


def endpoint_host(log=print) -> str | None:
    """The endpoint's bind address for the LocalStack target: None (127.0.0.1) in host mode; in Docker mode the
    bridge address, so that Lambda containers reach it and nothing else outside the host does (never 0.0.0.0)."""
    if (recorded_mode() or mode()) != "docker":
        return None
    address = docker_bridge_address()
    log(f"LocalStack runs in Docker: the endpoint binds {address} (the Docker bridge) for its Lambda containers")
    return address


def url_for_lambdas(endpoint_url: str) -> str:
    """The endpoint URL as LocalStack's Lambdas see it: the same in host mode, host.docker.internal in Docker."""
    if (recorded_mode() or mode()) != "docker":
        return endpoint_url
    host = endpoint_url.split("//", 1)[1].rsplit(":", 1)[0]
    return endpoint_url.replace(f"//{host}:", "//host.docker.internal:")
