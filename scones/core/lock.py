"""A lock on the project's state, per target: deploy, endpoint start/stop, up/down and clean take it.

Two commands that change the same target wait for each other instead of racing (two deploys both
"updating" and one threshold silently lost). The lock is an flock on a file in the state dir, so it is
released when its holder exits, however it exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator

from scones.core import statedir
from scones.core.errors import SconesError


class LockedError(SconesError):
    """Another scones command holds the lock and --no-wait was given, or it was held too long."""


@contextlib.contextmanager
def hold(
    target: str,
    command: str,
    wait: bool = True,
    timeout_s: float = 600.0,
    log: Callable[[str], None] = print,
) -> Iterator[None]:
    """Hold the state lock of `target` for the duration of the block."""
    path = statedir.ensure() / f"lock-{target}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another scones command"
            if not wait:
                raise LockedError(f"{holder} is changing target {target}", "wait for it, or drop --no-wait") from None
            log(f"waiting for {holder} to finish (target {target}) ...")
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LockedError(
                            f"{holder} held target {target} for over {timeout_s:.0f} s", "scones status, then retry"
                        ) from None
                    time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"`scones {command}` (pid {os.getpid()})".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock
