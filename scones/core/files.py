"""Writing an output file whole or not at all: a temporary file in the same folder, flushed to disk, then renamed
over the old one. A crash or a full disk leaves the previous file as it was and no temporary file behind.

Every report, record, manifest and metrics file scones writes goes through `write_atomic` (training/train.py,
which runs inside SageMaker and imports nothing of ours, has its own copy).
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from pathlib import Path

from scones.core.errors import UsageError

FULL = (errno.ENOSPC, errno.EDQUOT)  # no space left, quota exceeded


class DiskFullError(UsageError):
    """No room to write an output; the previous file, if any, is untouched."""

    next_default = "free some disk space (or pass another --out), then rerun"


def write_atomic(path: Path | str, data: bytes | str) -> Path:
    """Write `data` (str: UTF-8) to `path` atomically; returns `path`. A full disk raises DiskFullError naming
    the file, with the old content kept; any other OSError propagates, the temporary file removed either way."""
    path = Path(path)
    blob = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask decides, as for open()
        with os.fdopen(fd, "wb") as out:
            out.write(blob)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in FULL:
            raise DiskFullError(f"no space left on the device to write {path}: the previous file is kept") from None
        raise
    _sync_folder(path.parent)
    return path


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable where the platform allows (cheap: one fsync of the folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
