"""The board: every worker's counters in shared memory, so that /ping and /_scones/stats speak for all of them.

int64 counters per worker in anonymous shared memory, created before fork and seen by every worker; each
process writes its own row (`slot`) and reads the others'. One short note beside them says why a worker
stopped the endpoint, for the supervisor to report.
"""

from __future__ import annotations

import mmap

import numpy as np

FIELDS = ("pid", "loaded", "requests", "errors", "batches", "batched_images", "captured", "written", "files")
NOTE_BYTES = 1024


class Board:
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
