"""A bench's scratch folder: made fresh and removed when the bench exits, unless the user named one to keep.

The benches stage data, train models and start endpoints whose container stand-ins build virtual environments
(over a gigabyte each); left in /tmp run after run, they fill the disk.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path


def folder(prefix: str, keep: Path | None = None) -> Path:
    """`keep` as given (a --workdir: the user's, never removed), else a fresh folder removed at exit."""
    if keep is not None:
        return Path(keep)
    made = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, made, True)
    return made


def note(keep: Path | None) -> str:
    """What to add where a bench names its folder: whether it outlives the run."""
    return "" if keep is not None else " (removed at exit: --workdir keeps it)"
