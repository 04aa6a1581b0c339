"""Background services (the local cloud, endpoints): start detached, check, stop with their children."""

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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository


def read_record(path: Path) -> dict | None:
    """A service's JSON record (pid, url, …), or None when absent or unreadable."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) still answers kill(0)
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def runs_module(pid: int, module: str) -> bool:
    """Guards against a stale record whose pid now belongs to another program."""
    try:
        return module.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
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
            cwd=ROOT,
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
