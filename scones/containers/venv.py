"""Scratch virtual environments that stand in for a container image's Python.

Each is built once from a list of pinned requirements and cached under the state folder by a hash of that list,
so the second run costs nothing. pip uses the machine's own configuration (index, find-links, cache).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from scones.core import settings
from scones.core.errors import NotReadyError, UsageError


def root() -> Path:
    return settings.state_dir() / "venvs"


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def pip_install(python: Path, args: list[str], what: str, log=print) -> None:
    """`python -m pip install ARGS`; a failure is one line naming `what` and pip's last words."""
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        last = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()]
        raise NotReadyError(
            f"pip could not install {what}: {last[-1] if last else f'exit {done.returncode}'}",
            next_step=f"{python} -m pip install {' '.join(args)}",
        )


def check_requirements(path: Path) -> list[str]:
    """The requirement lines of a requirements.txt; a line pip could not parse is named with its number."""
    from packaging.requirements import InvalidRequirement, Requirement

    lines = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            lines.append(line)  # an option line (-r, --extra-index-url): pip's to judge
            continue
        try:
            Requirement(line)
        except InvalidRequirement as exc:
            raise UsageError(f"{path} line {number}: {line!r} is not a requirement ({exc})") from None
        lines.append(line)
    return lines


def find_python(version: str) -> str | None:
    """A `pythonX.Y` on PATH or under pyenv (these machines keep several there), else None."""
    found = shutil.which(f"python{version}")
    if found and subprocess.run([found, "-c", "pass"], capture_output=True, check=False).returncode == 0:
        return found  # (pyenv's shim exists even where that version is not selected: it then fails)
    pyenv = Path.home() / ".pyenv" / "versions"
    for folder in sorted(pyenv.glob(f"{version}.*"), reverse=True) if pyenv.is_dir() else []:
        candidate = folder / "bin" / f"python{version}"
        if candidate.is_file():
            return str(candidate)
    return None


def ensure(
    name: str,
    requirements: list[str],
    python: str = sys.executable,
    log=print,
    layered_on: Sequence[Path] = (),
) -> Path:
    """A venv named `name` with exactly `requirements` installed (built once, then reused). Returns its python.

    `layered_on`: site-packages folders the venv also sees, after its own (a `.pth` file), as a container image's
    packages sit under what its job installs: pip counts what they hold as installed and never writes to them.
    """
    interpreter = sys.version if python == sys.executable else str(python)  # another Python: another venv
    layers = [str(Path(p).resolve()) for p in layered_on]
    key = hashlib.sha256("\n".join([interpreter, *requirements, *layers]).encode()).hexdigest()[:10]
    venv = root() / f"{name}-{key}"
    ready = venv / ".scones-ready"
    if ready.is_file():
        return python_of(venv)
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    log(f"building the {name} environment ({len(requirements)} packages, once; cached in {venv})")
    made = subprocess.run([python, "-m", "venv", str(venv)], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        raise NotReadyError(
            f"could not create a venv at {venv}: {made.stderr.strip()}", next_step="apt-get install python3-venv"
        )
    if layers:
        (site_packages(venv) / "_scones_layers.pth").write_text("\n".join(layers) + "\n")
    if requirements:
        pip_install(python_of(venv), list(requirements), f"the {name} environment")
    ready.write_text("\n".join(requirements) + "\n")
    return python_of(venv)


def site_packages(venv: Path) -> Path:
    """The venv's own site-packages folder (asked of its python: the version is its own)."""
    done = subprocess.run(
        [str(python_of(venv)), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(done.stdout.strip())
