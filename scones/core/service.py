"""Background services (the local cloud, endpoints): start detached, check, stop with their children.

`Service` is the one start/stop/status/record helper: a server started with `python -m <module>` writes a
JSON record (pid, url, …) into the state dir once it listens, answers a health probe, and stops with its
whole process group on SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scones.core import settings


def read_record(path: Path) -> dict | None:
    """A service's JSON record (pid, url, …), or None when absent or unreadable."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, exited but not yet reaped, does not count). Portable through psutil."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def runs_module(pid: int, module: str) -> bool:
    """Guards against a stale record whose pid now belongs to another program."""
    import psutil

    try:
        return module in " ".join(psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def spawn(
    module: str, args: list[str], log_path: Path, env: dict[str, str], python: str | None = None
) -> subprocess.Popen:
    """`python -m module args…` in its own session (it outlives the CLI; stop() ends its whole group).
    `python`: another interpreter (LocalStack host mode runs in its own virtual environment)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            [python or sys.executable, "-m", module, *args],
            cwd=settings.ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def log_tail(log_path: Path, lines: int = 8) -> str:
    try:
        return "\n  ".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_ready(
    proc: subprocess.Popen,
    ready: Callable[[], object],
    log_path: Path,
    what: str,
    timeout_s: float,
    error: type[Exception] = RuntimeError,
) -> object:
    """Poll `ready()` until it returns something truthy; raise `error` if the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise error(f"{what} exited with status {proc.returncode}:\n  {log_tail(log_path)}")
        found = ready()
        if found:
            return found
        time.sleep(0.1)
    stop(proc.pid)
    raise error(f"{what} did not answer within {timeout_s:.0f} s (log: {log_path})")


def stop(pid: int, timeout_s: float = 10.0) -> None:
    """SIGTERM the process group, wait for the leader, then SIGKILL whatever is left of the group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def get_json(url: str, timeout_s: float = 1.0) -> tuple[int, dict | None]:
    """(HTTP status, JSON body or None) of a GET; status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body = response.read()
            return response.status, json.loads(body) if body else None
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (OSError, ValueError):
        return 0, None


@dataclass
class Status:
    running: bool
    url: str | None = None
    pid: int | None = None
    info: dict | None = None  # what the health probe returned
    detail: str = ""


@dataclass
class Service:
    what: str  # "local cloud", "endpoint scones-endpoint": how messages name it
    module: str  # started as `python -m module`
    record_path: Path
    log_path: Path
    probe: Callable[[str], tuple[bool, dict | None, str]]  # url → (healthy, info, detail when not)
    error: type[Exception] = RuntimeError

    def record(self) -> dict | None:
        return read_record(self.record_path)

    def status(self) -> Status:
        record = self.record()
        if record is None:
            return Status(False, detail="not started (no record in the state dir)")
        healthy, info, detail = self.probe(record["url"])
        if healthy:
            return Status(True, record["url"], record["pid"], info)
        if not alive(record["pid"]):
            detail = "stale record: process gone"
        return Status(False, record["url"], record["pid"], info, detail)

    def runs(self, pid: int | None) -> bool:
        """Whether `pid` is a live process of this server's module, answering or not (a stale record's pid, now
        another program's, is not)."""
        return bool(pid) and alive(pid) and runs_module(pid, self.module)

    def start(self, args: list[str], env: dict[str, str], timeout_s: float = 60.0) -> Status:
        """Spawn the server and wait until its record names the new process and it is healthy."""
        current = self.status()
        if not current.running and self.runs(current.pid):
            raise self.error(
                f"{self.what} (pid {current.pid}) exists but does not answer ({current.detail}); "
                f"stop it first (log: {self.log_path})"
            )
        self.record_path.unlink(missing_ok=True)
        proc = spawn(self.module, args, self.log_path, env)

        def ready() -> Status | None:
            found = self.status()
            return found if found.running and found.pid == proc.pid else None

        return wait_ready(proc, ready, self.log_path, self.what, timeout_s, self.error)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """Stop the recorded server; returns its pid, or None when none ran (a stale record is removed)."""
        record = self.record()
        if record is None:
            return None
        pid = record["pid"]
        running = runs_module(pid, self.module)
        if running:
            stop(pid, timeout_s)
        self.record_path.unlink(missing_ok=True)
        return pid if running else None


def port_holder(host: str, port: int) -> str | None:
    """None when host:port can be bound; else who holds it ("python (pid 123)" when known)."""
    import socket

    import psutil

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            return None
        except OSError:
            pass
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                return f"{psutil.Process(conn.pid).name()} (pid {conn.pid})"
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        pass
    return "another process"
