"""Docker-free Lambda execution: a function's real zip runs in warm worker subprocesses.

Each function gets a pool keyed by everything that changes what runs (code hash, handler, environment,
timeout); an update retires the old pool. A per-function semaphore caps concurrency: callers beyond the
cap queue instead of being throttled. Results are shaped as AWS shapes them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

WORKER_SCRIPT = str(Path(__file__).with_name("lambda_worker.py"))
# Variables a worker inherits from the local cloud's own environment; everything else is set explicitly.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
INIT_TIMEOUT_S = 10.0  # AWS gives a function's init phase 10 s of its own, outside the invocation's timeout


@dataclass(frozen=True)
class FunctionSpec:
    """What the runtime needs to know of a function; built from moto's LambdaFunction."""

    arn: str
    name: str
    handler: str
    runtime: str
    timeout_s: float
    memory_mb: int
    code: bytes = field(repr=False)
    code_sha256: str
    environment: dict[str, str]
    concurrency: int

    @property
    def code_id(self) -> str:
        """A file-system-safe name for the code (moto stores the sha256 base64-encoded, as AWS does)."""
        try:
            return base64.b64decode(self.code_sha256, validate=True).hex()
        except ValueError:
            return hashlib.sha256(self.code).hexdigest()

    @property
    def pool_key(self) -> str:
        parts = [self.code_sha256, self.handler, self.runtime, str(self.timeout_s), str(self.memory_mb)]
        parts.append(json.dumps(self.environment, sort_keys=True))
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()


@dataclass
class InvokeResult:
    payload: str  # JSON text
    failed: bool
    log: str


class WorkerGone(Exception):
    """The worker process exited or stopped answering."""


class Worker:
    def __init__(self, code_dir: Path, env: dict[str, str]) -> None:
        read_fd, write_fd = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-u", WORKER_SCRIPT, str(write_fd)],
            cwd=code_dir,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=None,  # anything written below Python's sys.stderr lands in the local cloud's log
            pass_fds=(write_fd,),
            close_fds=True,
        )
        os.close(write_fd)
        self._fd = read_fd
        self._buffer = b""
        self._ready = False

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait until the handler is imported (the init phase), so that an invocation's timeout counts the
        handler's own time only, as on AWS. False if init takes longer (the invocation then waits for it)."""
        if self._ready:
            return True
        try:
            self._ready = self._read(time.monotonic() + timeout_s).get("ready", False)
        except (TimeoutError, WorkerGone):
            return False
        return self._ready

    def call(self, request: dict, timeout_s: float) -> dict:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise WorkerGone(str(exc)) from exc
        deadline = time.monotonic() + timeout_s
        reply = self._read(deadline)
        if reply.get("ready"):  # init finished during this call
            self._ready = True
            reply = self._read(deadline)
        return reply

    def _read(self, deadline: float) -> dict:
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            ready, _, _ = select.select([self._fd], [], [], remaining)
            if not ready:
                raise TimeoutError
            chunk = os.read(self._fd, 1 << 20)
            if not chunk:
                raise WorkerGone(f"exit status {self.proc.wait()}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def close(self) -> None:
        if self._fd < 0:  # closed already: never close a file descriptor number twice
            return
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
        except OSError:
            pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = -1


def run_on(worker: Worker, event: str, request_id: str, timeout_s: float) -> InvokeResult:
    """One invocation on a warm worker, errors shaped as AWS shapes them. A worker that timed out or
    crashed is closed here (its process is gone afterwards); callers reuse only a live one.
    Shared by the embedded cloud's pools and LocalStack host mode's executor (services/localstack)."""
    deadline_ms = int((time.time() + timeout_s) * 1000)
    request = {"event": event, "request_id": request_id, "deadline_ms": deadline_ms}
    try:
        reply = worker.call(request, timeout_s)
    except TimeoutError:
        worker.close()
        message = f"RequestId: {request_id} Error: Task timed out after {timeout_s:.2f} seconds"
        return InvokeResult(_error("Sandbox.Timedout", message), True, message)
    except WorkerGone as exc:
        worker.close()
        message = f"RequestId: {request_id} Error: Runtime exited with error: {exc}"
        return InvokeResult(_error("Runtime.ExitError", message), True, message)
    return InvokeResult(reply["payload"], reply["failed"], reply["log"])


class FunctionPool:
    def __init__(self, spec: FunctionSpec, code_dir: Path, env: dict[str, str]) -> None:
        self.spec = spec
        self.code_dir = code_dir
        self.env = env
        self._slots = threading.BoundedSemaphore(max(1, spec.concurrency))
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._lock = threading.Lock()
        self.closed = False

    def invoke(self, event: str, request_id: str) -> InvokeResult:
        with self._slots:
            worker = self._take()
            result = run_on(worker, event, request_id, self.spec.timeout_s)
            if worker.proc.poll() is None:
                self._give_back(worker)
            else:
                self._discard(worker)
            return result

    def _take(self) -> Worker:
        with self._lock:
            worker = self._idle.pop() if self._idle else None
        if worker is None or worker.proc.poll() is not None:
            worker = Worker(self.code_dir, self.env)
            worker.wait_ready(INIT_TIMEOUT_S)  # a cold start's import is not the handler's time
        with self._lock:
            self._busy.add(worker)
        return worker

    def _give_back(self, worker: Worker) -> None:
        with self._lock:
            self._busy.discard(worker)
            if not self.closed:
                self._idle.append(worker)
                return
        worker.close()

    def _discard(self, worker: Worker) -> None:
        with self._lock:
            self._busy.discard(worker)
        worker.close()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.close()

    def worker_pids(self) -> list[int]:
        with self._lock:
            return [w.proc.pid for w in [*self._idle, *self._busy]]


def _error(error_type: str, message: str) -> str:
    return json.dumps({"errorMessage": message, "errorType": error_type, "stackTrace": []})


class LambdaRuntime:
    """All pools of one local cloud process."""

    def __init__(self, workdir: Path, base_env: dict[str, str]) -> None:
        self.workdir = workdir
        self.base_env = base_env
        self._pools: dict[str, FunctionPool] = {}
        self._lock = threading.Lock()

    def invoke(self, spec: FunctionSpec, event: str, request_id: str | None = None) -> InvokeResult:
        return self._pool(spec).invoke(event, request_id or str(uuid.uuid4()))

    def _pool(self, spec: FunctionSpec) -> FunctionPool:
        with self._lock:
            pool = self._pools.get(spec.arn)
            if pool is not None and pool.spec.pool_key == spec.pool_key:
                return pool
            if pool is not None:
                pool.close()
            pool = FunctionPool(spec, self._unpack(spec), self._env_for(spec))
            self._pools[spec.arn] = pool
            return pool

    def _unpack(self, spec: FunctionSpec) -> Path:
        target = self.workdir / spec.code_id
        if target.is_dir():
            return target
        self.workdir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.workdir, prefix=".unpack-"))
        try:
            with zipfile.ZipFile(io.BytesIO(spec.code)) as archive:
                archive.extractall(staging)
            os.replace(staging, target)  # atomic: a half-unpacked folder is never used
        except FileExistsError:
            shutil.rmtree(staging, ignore_errors=True)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if not target.is_dir():
                raise
        return target

    def _env_for(self, spec: FunctionSpec) -> dict[str, str]:
        env = {k: os.environ[k] for k in INHERITED if k in os.environ}
        env.update(self.base_env)
        env.update(
            {
                "_HANDLER": spec.handler,
                "LAMBDA_TASK_ROOT": str(self.workdir / spec.code_id),
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
                "AWS_LAMBDA_FUNCTION_NAME": spec.name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
                "SCONES_FUNCTION_ARN": spec.arn,
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        env.update(spec.environment)
        return env

    def retire(self, arn: str) -> None:
        """Stop the workers of a deleted function."""
        with self._lock:
            pool = self._pools.pop(arn, None)
        if pool is not None:
            pool.close()

    def worker_pids(self) -> list[int]:
        with self._lock:
            return [pid for pool in self._pools.values() for pid in pool.worker_pids()]

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()
