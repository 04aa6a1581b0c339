"""The process side of the endpoint: one port, one or several worker processes, signals, restarts, the record.

`serve` claims the port, writes the record (pid, url) and runs the app built by `build(board)`: in this
process for one worker, else in `workers` forked processes that `supervise` starts, stops and restarts.

Each worker is a whole server (event loop, batcher, onnxruntime session, capture writer) in its own process,
so HTTP parsing, decoding and capture of one worker run while another worker's model computes: a single
process is held back by its GIL. Each worker listens on its own socket bound to the same port with
SO_REUSEPORT (the kernel spreads connections over them); the supervisor holds the port bound but not
listening, so that port 0 resolves once for all of them. Their counters meet on the board (board.py).

Capture: every worker owns its own writer and files (their names carry a uuid), so no record is shared,
lost or written twice across workers; SIGTERM reaches every worker (the server's process group), each
finishes its requests and flushes its buffer, and the supervisor exits once they all have.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import uvicorn

from .app import EndpointApp
from .board import Board

CANNOT_LOAD = 2  # a worker's exit status when the model cannot be loaded: not restarted
PR_SET_PDEATHSIG = 1
WORKER_DEATHS = "WorkerDeaths"  # put (namespace `scones`) per worker that dies unasked: a rollout rolls back on it
RESTART_PAUSE_S = 0.5  # a worker that cannot start would otherwise spin


def die_with_parent(parent: int) -> None:
    """Linux: this process gets SIGTERM (its graceful stop: requests finish, capture flushes) when its parent
    dies, even by SIGKILL, so that no worker serves on as an orphan. Elsewhere: nothing."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl: the signal will not come
        os.kill(os.getpid(), signal.SIGTERM)


def worker_death_data(name: str, variants: list[str], when: float) -> list[dict]:
    """PutMetricData's MetricData for one worker that died unasked: WorkerDeaths 1 for each variant the server
    serves (dimensions EndpointName and VariantName). Every worker serves every variant, so during a rollout the
    candidate lost a worker whenever one dies, whichever model brought it down."""
    stamp = datetime.fromtimestamp(when, UTC)
    return [
        {
            "MetricName": WORKER_DEATHS,
            "Dimensions": [{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": variant}],
            "Timestamp": stamp,
            "Value": 1.0,
            "Unit": "Count",
        }
        for variant in variants
    ]


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


def claim_port(host: str, port: int, shared: bool, join: bool = False) -> socket.socket:
    """The server's bound socket. Shared (always, now: a deploy's new worker set may join the port): SO_REUSEPORT,
    after checking that nothing listens there yet, since another server with SO_REUSEPORT (another endpoint of
    this user) would otherwise be joined silently and handed half of the connections; the check raises OSError
    instead. `join`: the caller means to join the server there (a deploy switching models, see scones/endpoint.py)."""
    if shared and port and not join:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))  # EADDRINUSE when anything listens on the port
    return reuseport_socket(host, port, reuse_port=shared)


def supervise(
    workers: int,
    run_worker: Callable[[int], None],
    log=print,
    on_exit: Callable[[int, int, int], None] = lambda slot, pid, code: None,
    on_death: Callable[[int, int, int], None] = lambda slot, pid, code: None,
) -> int:
    """Fork `workers` processes running `run_worker(slot)`; forward SIGTERM/SIGINT; restart a worker that
    dies on its own (unless it could not load the model); return the worst exit status once every worker
    has exited. `on_exit(slot, pid, code)` runs as each worker is reaped; `on_death(slot, pid, code)` then runs
    for a worker that died unasked (killed, crashed, out of memory, or could not load), within the pause before
    its restart; neither may raise. Each worker dies with the supervisor (die_with_parent). Call with no
    threads running (fork copies only the calling thread)."""
    supervisor = os.getpid()
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
        die_with_parent(supervisor)
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
        on_exit(slot, pid, code)
        worst = worst or (code if code > 0 else 0)
        if stopping:
            continue
        died = time.monotonic()
        on_death(slot, pid, code)
        if code == CANNOT_LOAD:  # another try would fail the same way
            log(f"worker {slot} cannot load the model; stopping the others")
            forward(signal.SIGTERM, None)
        else:
            log(f"worker {slot} (pid {pid}) exited with status {code}; starting another")
            time.sleep(max(0.0, RESTART_PAUSE_S - (time.monotonic() - died)))
            if not stopping:
                start(slot)
    return worst


def run_uvicorn(app: EndpointApp, sock: socket.socket, load_first: bool = False) -> int:
    """Serve on `sock` until SIGTERM/SIGINT (graceful: requests finish, capture flushes); CANNOT_LOAD when
    the model could not be loaded, else 0."""
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level="warning",
        access_log=False,
        loop="auto",
        http="auto",
        timeout_graceful_shutdown=30,
        backlog=2048,
        proxy_headers=False,  # no proxy in front: skip its middleware on every request
        server_header=False,
    )
    server = uvicorn.Server(config)
    app.load_first = load_first  # the socket listens only once the lifespan startup (and so the load) is done

    def stop(*_args) -> None:
        server.should_exit = True

    app.on_load_error = stop
    # Until uvicorn installs its own handlers (and again when it re-raises the signal after its graceful
    # shutdown, with the handler it found) a stop signal just asks the server to stop.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.run(sockets=[sock])
    return CANNOT_LOAD if app.load_error is not None else 0


def serve(
    build: Callable[[Board], EndpointApp],
    host: str,
    port: int,
    workers: int = 1,
    record_path: Path | None = None,
    about: dict | None = None,
    join: bool = False,
    variants: int = 1,
    on_death: Callable[[int, int, int], None] | None = None,
) -> int:
    """Run `workers` servers on host:port, each made by `build(board)`; returns the exit status.

    One worker serves in this process. Several: this process holds the port (bound, not listening, so
    port 0 resolves once) and supervises worker processes that each listen on it with SO_REUSEPORT.
    `join`: join the server already listening on the port (SO_REUSEPORT, as every server here binds), each
    worker listening only once its model is loaded, so that the old server can then stop with no request lost.
    `on_death(slot, pid, code)`: a worker died unasked (several workers only: one worker is this process)."""
    about = about or {}
    board = Board(workers, variants)
    sock = claim_port(host, port, shared=True, join=join)  # bound before the record is written: 0 picks a free port
    port = sock.getsockname()[1]
    url = f"http://{host}:{port}"
    if record_path is not None:
        record_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = record_path.with_suffix(".tmp")
        record = {"pid": os.getpid(), "url": url, "port": port, "workers": workers, "started": time.time()}
        record["reuseport"] = True  # a deploy may start the next model's workers on this port beside these
        tmp.write_text(json.dumps({**record, **about}))
        os.replace(tmp, record_path)
    plural = "s" if workers > 1 else ""
    print(f"endpoint {about.get('name', '')} listening on {url} with {workers} worker{plural} {about}", flush=True)

    def retire(slot: int, pid: int, code: int) -> None:
        lost = board.retire(slot)
        if lost:  # its buffer died with it: say so (the stats and `scones endpoint status` count it too)
            print(
                f"worker {slot} (pid {pid}) exited with status {code}: {lost} answered requests were not "
                f"captured (lost with its buffer)",
                flush=True,
            )

    def worker(slot: int) -> None:
        sock.close()  # the supervisor's: never listening
        board.slot = slot
        board.table[slot] = 0  # a restarted worker is not loaded until it has loaded
        app = build(board)
        code = run_uvicorn(app, reuseport_socket(host, port), load_first=join)
        print(f"worker {slot} (pid {os.getpid()}) stopped after {app.requests} requests", flush=True)
        sys.exit(code)

    try:
        if workers == 1:
            code = run_uvicorn(build(board), sock, load_first=join)
        else:
            deaths = on_death or (lambda *_: None)
            code = supervise(workers, worker, log=lambda m: print(m, flush=True), on_exit=retire, on_death=deaths)
    finally:
        if record_path is not None:
            try:
                if json.loads(record_path.read_text()).get("pid") == os.getpid():
                    record_path.unlink()
            except (OSError, ValueError):
                pass
        names = ("requests", "errors", "captured", "written", "files", "dropped", "spooled", "unsent", "lost_killed")
        totals = {name: board.total(name) for name in names}
        print(f"endpoint stopped; {totals}", flush=True)
        if board.read_note():
            print(f"error: {board.read_note()}", file=sys.stderr, flush=True)
    return code
