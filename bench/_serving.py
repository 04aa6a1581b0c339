"""What the serving benchmarks share: the wrk driver, the raw in-process baseline, process-tree RSS."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PAGE = os.sysconf("SC_PAGE_SIZE")
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


def wrk(url: str, script: Path, connections: int = 8, seconds: float = 8.0, threads: int = 2) -> WrkResult:
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{round(seconds)}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        p50_ms=_ms(out, "50%"),
        p99_ms=_ms(out, "99%"),
        requests=int(re.search(r"(\d+) requests in", out).group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )


def raw_rate(model, decode, predict, body: bytes, seconds: float, batch: int = 8) -> float:
    """Images/s of one process that decodes, preprocesses and runs batches of `batch` on the same PNG."""
    t0, done = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        predict(np.stack([decode(body, "image/png", model.size) for _ in range(batch)]), model)
        done += batch
    return done / (time.perf_counter() - t0)


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        p = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(p)
        rss[p] = int(fields[21]) * PAGE
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += children.get(p, [])
    return total / 1e6


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
