"""Start, stop and inspect the embedded local cloud (`scones up/down/status`), and LocalStack's compose."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

from scones.core import aws, service, settings, statedir
from scones.core.errors import SconesError

HEALTH_PATH = "/_scones/health"
MODULE = "services.localcloud"


class LocalCloudError(SconesError):
    """The local cloud could not be started, reached or stopped."""

    next_default = "scones down, then scones up"


Status = service.Status


def health(url: str, timeout_s: float = 1.0) -> dict | None:
    status, body = service.get_json(url + HEALTH_PATH, timeout_s)
    return body if status == 200 else None


def _probe(url: str) -> tuple[bool, dict | None, str]:
    found = health(url)
    return found is not None, found, "" if found else "process alive but not answering"


def _service() -> service.Service:
    state = settings.state_dir()
    return service.Service(
        "local cloud", MODULE, settings.localcloud_record_path(), state / "localcloud.log", _probe, LocalCloudError
    )


def status() -> Status:
    return _service().status()


def up(port: int | None = None, host: str | None = None, timeout_s: float = 60.0, log=print) -> Status:
    """Start the local cloud in the background unless one already answers; idempotent."""
    cloud = _service()
    current = cloud.status()
    if current.running:
        log(f"local cloud already running at {current.url} (pid {current.pid})")
        return current
    host = host or settings.localcloud_host()
    port = settings.localcloud_port() if port is None else port
    holder = service.port_holder(host, port) if port else None
    if holder:
        raise LocalCloudError(
            f"port {port} is taken by {holder}",
            f"scones up --port 0 (any free port), or set {settings.LOCALCLOUD_PORT}",
        )
    state = statedir.ensure()
    env = dict(os.environ, **{settings.STATE_DIR: str(state)})
    env.pop(settings.AWS_ENDPOINT_URL, None)  # the server must not point at itself through a stale value
    log(f"starting local cloud on {host}:{port} (log: {cloud.log_path}) ...")
    found = cloud.start(["--host", host, "--port", str(port), "--state-dir", str(state)], env, timeout_s)
    with aws.pointed_at(found.url):
        aws.ensure_bucket(settings.bucket())
    log(f"local cloud ready at {found.url} (pid {found.pid})")
    return found


def down(timeout_s: float = 10.0, log=print) -> bool:
    """Stop the local cloud and every Lambda worker it started. Returns whether anything was running."""
    cloud = _service()
    had_record = cloud.record() is not None
    pid = cloud.stop(timeout_s)
    if pid is None:
        log("local cloud was not running (removed a stale record)" if had_record else "local cloud is not running")
        return False
    log(f"local cloud stopped (pid {pid})")
    return True


@contextlib.contextmanager
def ephemeral(prefix: str = "scones-") -> Iterator[Status]:
    """A local cloud of its own on a free port, in a fresh state dir, with AWS_ENDPOINT_URL pointed at it; stopped,
    its state dir removed and the environment restored afterwards (tests, benchmarks). The state dir holds the
    container stand-ins' virtual environments (over a gigabyte once an endpoint has run), so leaving it would fill
    /tmp a test session at a time."""
    saved = os.environ.get(settings.STATE_DIR)
    state = tempfile.mkdtemp(prefix=prefix)
    os.environ[settings.STATE_DIR] = state
    try:
        cloud = up(port=0, log=lambda _m: None)
        with aws.pointed_at(cloud.url):
            aws.reset()
            yield cloud
        aws.reset()
    finally:
        try:
            down(log=lambda _m: None)
        finally:
            shutil.rmtree(state, ignore_errors=True)
            if saved is None:
                os.environ.pop(settings.STATE_DIR, None)
            else:
                os.environ[settings.STATE_DIR] = saved


def docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=15).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def compose(*args: str) -> None:
    """`docker compose` on docker-compose.yml (LocalStack), with a one-line error when Docker is absent."""
    if not docker_engine_answers():
        raise LocalCloudError(
            "STACK=localstack needs a running Docker engine and none answers "
            "(`docker info` failed); use the default docker-free local cloud: `make up`"
        )
    subprocess.run(["docker", "compose", "-f", str(settings.ROOT / "docker-compose.yml"), *args], check=True)
