"""The board: every worker's counters in shared memory, so that /ping and /_scones/stats speak for all of them.

int64 counters per worker in anonymous shared memory, created before fork and seen by every worker; each
process writes its own row (`slot`) and reads the others'. One short note beside them says why a worker
stopped the endpoint, for the supervisor to report.

A worker that exits (or is killed) is `retire`d by the supervisor: its counters join the retired row, so totals
never go back when a worker is restarted, and what it had answered but not captured (captured − written −
spooled − unsent: its buffer, gone with it) is added to `lost_killed`.
"""

from __future__ import annotations

import mmap

import numpy as np

FIELDS = (
    "pid",
    "loaded",
    "requests",
    "errors",
    "batches",
    "batched_images",
    "captured",
    "written",
    "files",
    "dropped",  # capture full under the drop policy: answered, not captured
    "refused",  # capture full under the block policy: answered 503 after the wait
    "spooled",  # not uploaded by shutdown: written to the state dir's capture-unsent/ instead
    "unsent",  # neither uploaded nor written locally at shutdown
    "lost_killed",  # in the retired row only: records a dead worker had answered but not written
    "timeouts",  # request bodies not received within the deadline (408)
)
RETIRED_ONLY = ("pid", "loaded")
VARIANT_FIELDS = ("requests", "errors5xx", "errors4xx")  # per production or shadow variant, per worker
NOTE_BYTES = 1024


class Board:
    def __init__(self, workers: int, variants: int = 1) -> None:
        self.workers, self.variants = workers, variants
        size = (workers + 1) * len(FIELDS) * 8
        vsize = (workers + 1) * variants * len(VARIANT_FIELDS) * 8
        self._memory = mmap.mmap(-1, size + vsize + NOTE_BYTES)  # MAP_SHARED: survives fork()
        rows = np.frombuffer(self._memory, dtype=np.int64, count=(workers + 1) * len(FIELDS)).reshape(
            workers + 1, len(FIELDS)
        )
        self.table, self.retired = rows[:workers], rows[workers]  # the workers' rows; the dead workers' sums
        # per variant (in the order the endpoint lists them): [worker or retired row, variant, VARIANT_FIELDS]
        self.vtable = np.frombuffer(
            self._memory, dtype=np.int64, count=(workers + 1) * variants * len(VARIANT_FIELDS), offset=size
        ).reshape(workers + 1, variants, len(VARIANT_FIELDS))
        self._note = memoryview(self._memory)[size + vsize :]
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

    def set_variant(self, index: int, **values: int) -> None:
        row = self.vtable[self.slot, index]
        for name, value in values.items():
            row[VARIANT_FIELDS.index(name)] = value

    def variant_total(self, index: int, name: str) -> int:
        """Over every worker, live or retired."""
        return int(self.vtable[:, index, VARIANT_FIELDS.index(name)].sum())

    def column(self, name: str) -> np.ndarray:
        return self.table[:, FIELDS.index(name)]

    def total(self, name: str) -> int:
        """Over the live workers and the retired ones."""
        return int(self.column(name).sum() + self.retired[FIELDS.index(name)])

    def retire(self, slot: int) -> int:
        """A worker has exited (the supervisor calls this): keep its counts, zero its row; returns the records
        it had answered but not written (lost with its buffer when it was killed)."""
        row = self.table[slot]
        at = FIELDS.index
        lost = int(row[at("captured")] - row[at("written")] - row[at("spooled")] - row[at("unsent")])
        lost = max(lost, 0)
        for name in FIELDS:
            if name not in RETIRED_ONLY:
                self.retired[at(name)] += row[at(name)]
        self.retired[at("lost_killed")] += lost
        row[:] = 0
        self.vtable[self.workers] += self.vtable[slot]
        self.vtable[slot] = 0
        return lost

    def all_loaded(self) -> bool:
        return bool(self.column("loaded").all())
