"""Run a command as it runs in a SageMaker container: `/opt/ml` is a folder of ours, private to that command.

AWS's drivers hard-code `/opt/ml/...` (sagemaker.train's container drivers, the processing job's paths). A user
and mount namespace (`unshare --user --map-root-user --mount`, no root and no Docker needed) binds a scratch folder
over `/opt/ml` for that one process tree; nothing on the host changes except the empty mount point.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from scones.core.errors import NotReadyError

MOUNT_POINT = Path("/opt/ml")
_BIND = 'mount --bind "$0" /opt/ml && exec "$@"'  # $0: the tree; "$@": the command


def check() -> None:
    """One line naming what is missing when a private /opt/ml cannot be had here."""
    if not shutil.which("unshare"):
        raise NotReadyError("`unshare` is not installed", next_step="apt-get install util-linux")
    if not MOUNT_POINT.is_dir():
        try:
            MOUNT_POINT.mkdir(parents=True)
        except OSError:
            raise NotReadyError(
                f"{MOUNT_POINT} does not exist and cannot be created by this user (it is only a mount point)",
                next_step=f"sudo mkdir -p {MOUNT_POINT}",
            ) from None
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        raise NotReadyError(
            f"this machine refuses user namespaces ({probe.stderr.strip() or 'unshare failed'})",
            next_step="sysctl -w kernel.unprivileged_userns_clone=1, or run where user namespaces are allowed",
        )


def command(
    tree: Path, argv: Sequence[str], binds: Mapping[Path, Path] | None = None, private_pids: bool = False
) -> list[str]:
    """argv wrapped so that it sees `tree` at /opt/ml.

    binds: more {source: mount point} pairs (each mount point must exist on the host: a file over a file, a
    folder over a folder). private_pids: a PID namespace of its own too (its /proc shows only its processes)."""
    if not binds:
        script = _BIND
    else:
        extra = "".join(
            f"mount --bind {shlex.quote(str(Path(s).resolve()))} {shlex.quote(str(t))} && " for s, t in binds.items()
        )
        script = f'mount --bind "$0" /opt/ml && {extra}exec "$@"'
    pids = ["--pid", "--fork", "--mount-proc"] if private_pids else []
    return [
        "unshare",
        "--user",
        "--map-root-user",
        "--mount",
        *pids,
        "sh",
        "-c",
        script,
        str(Path(tree).resolve()),
        *argv,
    ]


def run(
    tree: Path,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    stdout=None,
    stderr=None,
) -> subprocess.CompletedProcess:
    """Run argv with `tree` bound at /opt/ml; env replaces the environment when given (else it is inherited)."""
    check()
    return subprocess.run(
        command(tree, argv),
        env=dict(env) if env is not None else os.environ.copy(),
        cwd=cwd,
        timeout=timeout,
        stdout=stdout,
        stderr=stderr,
        check=False,
    )


def popen(
    tree: Path,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    **popen_args,
) -> subprocess.Popen:
    """`run`, started and not awaited (the caller streams its output); popen_args go to subprocess.Popen."""
    check()
    return subprocess.Popen(
        command(tree, argv), env=dict(env) if env is not None else os.environ.copy(), cwd=cwd, **popen_args
    )
