"""Several server processes behind one port, and the shared board their counters are summed on.

Each worker is a whole server (event loop, batcher, onnxruntime session, capture writer) in its own process,
so HTTP parsing, decoding and capture of one worker run while another worker's model computes: a single
process is held back by its GIL. Each worker listens on its own socket bound to the same port with
SO_REUSEPORT (the kernel spreads connections over them); the supervisor holds the port bound but not
listening, so that port 0 resolves once for all of them.

Capture: every worker owns its own writer and files (their names carry a uuid), so no record is shared,
lost or written twice across workers; SIGTERM reaches every worker (the server's process group), each
finishes its requests and flushes its buffer, and the supervisor exits once they all have.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import signal
import socket
import sys
import time
from collections.abc import Callable

import numpy as np

CANNOT_LOAD = 2  # a worker's exit status when the model cannot be loaded: not restarted
FIELDS = ("pid", "loaded", "requests", "errors", "batches", "batched_images", "captured", "written", "files")


NOTE_BYTES = 1024


class Board:
    """int64 counters per worker in anonymous shared memory (created before fork, seen by every worker),
    and one short note (why a worker stopped the endpoint) for the supervisor to report."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        size = workers * len(FIELDS) * 8
        self._memory = mmap.mmap(-1, size + NOTE_BYTES)  # MAP_SHARED: survives fork()
        self.table = np.frombuffer(self._memory, dtype=np.int64, count=workers * len(FIELDS)).reshape(
            workers, len(FIELDS)
        )
        self._note = memoryview(self._memory)[size:]
        self.slot = 0  # which row this process writes

    def note(self, text: str) -> None:
        data = text.encode()[: NOTE_BYTES - 1]
        self._note[: len(data) + 1] = data + b"\0"

    def read_note(self) -> str:
        return bytes(self._note).split(b"\0", 1)[0].decode(errors="replace")

    def set(self, **values: int) -> None:
        row = self.table[self.slot]
        for name, value in values.items():
            row[FIELDS.index(name)] = value

    def column(self, name: str) -> np.ndarray:
        return self.table[:, FIELDS.index(name)]

    def total(self, name: str) -> int:
        return int(self.column(name).sum())

    def all_loaded(self) -> bool:
        return bool(self.column("loaded").all())


def reuseport_socket(host: str, port: int, reuse_port: bool = True) -> socket.socket:
    """A socket bound to host:port that other processes may bind too (unless `reuse_port` is False); the
    server listens on it (asyncio's create_server calls listen), and only listening sockets are handed
    connections."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def claim_port(host: str, port: int, shared: bool) -> socket.socket:
    """The server's bound socket. Shared (several workers): SO_REUSEPORT, after checking that nothing
    listens there yet, since another server with SO_REUSEPORT (another endpoint of this user) would
    otherwise be joined silently and handed half of the connections; the check raises OSError instead."""
    if shared and port:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))  # EADDRINUSE when anything listens on the port
    return reuseport_socket(host, port, reuse_port=shared)


def supervise(workers: int, run_worker: Callable[[int], None], log=print) -> int:
    """Fork `workers` processes running `run_worker(slot)`; forward SIGTERM/SIGINT; restart a worker that
    dies on its own (unless it could not load the model); return the worst exit status once every worker
    has exited. Call with no threads running (fork copies only the calling thread)."""
    children: dict[int, int] = {}  # pid -> slot
    stopping = False

    def start(slot: int) -> None:
        # A SIGTERM in the instant after fork would otherwise run the supervisor's handler in the child and be
        # lost there: hold both signals across the fork, and let them in once each side has its own handlers.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        pid = os.fork()
        if pid != 0:
            children[pid] = slot
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            return
        # the worker
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        code = 0
        try:
            run_worker(slot)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:  # a worker reports and exits: it never returns into the supervisor's loop
            print(f"worker {slot}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)

    def forward(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)  # a worker given SIGINT too would stop without its graceful path

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for slot in range(workers):
        start(slot)
    worst = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        slot = children.pop(pid, None)
        if slot is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        worst = worst or (code if code > 0 else 0)
        if code == CANNOT_LOAD and not stopping:  # another try would fail the same way
            log(f"worker {slot} cannot load the model; stopping the others")
            forward(signal.SIGTERM, None)
        elif not stopping:
            log(f"worker {slot} (pid {pid}) exited with status {code}; starting another")
            time.sleep(0.5)  # a worker that cannot start would otherwise spin
            if not stopping:
                start(slot)
    return worst
