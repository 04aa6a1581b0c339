"""The state folder (settings.state_dir(): records, logs, locks, unpacked Lambda code) is private to its user.

It holds what the local clouds and endpoints run and what they log, so it is created 0700, and an existing
one that others can read or enter is tightened to 0700 with one line on stderr (docs/security.md).
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path

from scones.core import settings
from scones.core.errors import UsageError

MODE = 0o700
_told: set[Path] = set()  # folders already reported as tightened by this process


def ensure(path: Path | None = None, create: bool = True) -> Path:
    """Create the state folder (default: settings.state_dir()) with mode 0700, or tighten it to 0700.
    `create=False`: only tighten one that exists (every command does this; those that write create it)."""
    path = (path or settings.state_dir()).resolve()
    if not create and not path.is_dir():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=MODE)
        path.chmod(MODE)  # mkdir's mode is filtered by the umask: make it exact
        return path
    except FileExistsError:
        pass
    current = stat.S_IMODE(path.stat().st_mode)
    if current & 0o077:
        try:
            path.chmod(MODE)
        except PermissionError:
            raise UsageError(
                f"the state folder {path} is mode {current:o} and not yours to make private",
                f"set {settings.STATE_DIR} to a folder you own",
            ) from None
        if path not in _told:
            _told.add(path)
            print(
                f"scones: state folder {path} was mode {current:o}; tightened to 700 (it holds logs and code)",
                file=sys.stderr,
            )
    return path
