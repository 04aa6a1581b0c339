"""Progress for long work: a live line on a terminal, a line every few seconds in logs and CI."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _human(n: float, unit: str) -> str:
    if unit == "B":
        for suffix in ("B", "KiB", "MiB", "GiB"):
            if n < 1024 or suffix == "GiB":
                return f"{n:.1f} {suffix}" if suffix != "B" else f"{int(n)} B"
            n /= 1024
    return f"{int(n)}"


class Progress:
    def __init__(self, label: str, unit: str = "", stream: TextIO | None = None, every_s: float = 5.0) -> None:
        self.label, self.unit = label, unit
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.every_s = every_s if not self.live else 0.1
        self.total: int | None = None
        self.done = 0
        self._t0 = self._last = 0.0

    def start(self, total: int | None, done: int = 0) -> Progress:
        self.total, self.done = total, done
        self._t0 = self._last = time.monotonic()
        self._emit(force=True)
        return self

    def update(self, done: int) -> None:
        self.done = done
        self._emit()

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def finish(self, note: str = "") -> None:
        self._emit(force=True, end=True, note=note)

    def _emit(self, force: bool = False, end: bool = False, note: str = "") -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        elapsed = max(now - self._t0, 1e-9)
        done = _human(self.done, self.unit)
        text = f"{self.label}: {done}"
        if self.total:
            text += f" / {_human(self.total, self.unit)} ({100 * self.done / self.total:.0f}%)"
        if self.unit == "B" and self.done:
            text += f" at {_human(self.done / elapsed, 'B')}/s"
        if end:
            text += f" in {elapsed:.1f} s" + (f" {note}" if note else "")
        if self.live:
            self.stream.write("\r\033[K" + text + ("\n" if end else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
