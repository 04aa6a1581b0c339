"""What the serving benchmarks share: the wrk driver, the raw in-process baseline, process-tree RSS."""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")
WRK_SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "image/png"
local f = io.open("{body}", "rb")
wrk.body = f:read("*all")
f:close()
"""


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    server_cpu_s: float = float("nan")  # CPU seconds the server's process tree used during the run
    client_cpu_s: float = float("nan")  # CPU seconds wrk used

    def cpu_ms_per_request(self) -> float:
        """Server CPU per request: what the scheduler's share does not change (the machine is shared)."""
        return self.server_cpu_s / self.requests * 1000


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk_script(body: bytes, folder: Path) -> Path:
    """One Lua script for every server: POST the same PNG as image/png."""
    (folder / "body.png").write_bytes(body)
    script = folder / "post.lua"
    script.write_text(WRK_SCRIPT.format(body=folder / "body.png"))
    return script


def _ms(text: str, label: str) -> float:
    found = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", text)
    if not found:
        return float("nan")
    return float(found.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]


def wrk(
    url: str, script: Path, connections: int = 8, seconds: float = 8.0, threads: int = 2, server_pid: int | None = None
) -> WrkResult:
    cpu0 = tree_cpu_s(server_pid) if server_pid else float("nan")
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{round(seconds)}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu1 = tree_cpu_s(server_pid) if server_pid else float("nan")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        p50_ms=_ms(out, "50%"),
        p99_ms=_ms(out, "99%"),
        requests=int(re.search(r"(\d+) requests in", out).group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        server_cpu_s=cpu1 - cpu0,
        client_cpu_s=(children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime),
    )


def raw_rate(model, decode, predict, body: bytes, seconds: float, batch: int = 8) -> tuple[float, float]:
    """(images/s, CPU ms per image) of this process decoding, preprocessing and running batches of `batch`
    on the same PNG."""
    t0, c0, done = time.perf_counter(), time.process_time(), 0
    while time.perf_counter() - t0 < seconds:
        predict(np.stack([decode(body, "image/png", model.size) for _ in range(batch)]), model)
        done += batch
    return done / (time.perf_counter() - t0), (time.process_time() - c0) / done * 1000


def _tree(pid: int) -> list[list[str]]:
    """/proc/<pid>/stat fields (after the command name) of a process and all its descendants."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        p = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(p)
        stats[p] = fields
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            found.append(stats[p])
        todo += children.get(p, [])
    return found


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB."""
    return sum(int(f[21]) * PAGE for f in _tree(pid)) / 1e6


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its living descendants."""
    return sum(int(f[11]) + int(f[12]) for f in _tree(pid)) / TICKS
