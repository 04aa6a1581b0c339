"""scones.core.files.write_atomic and training/train.py's own copy: a full disk leaves the previous file intact, no
temporary file behind, and one line naming the file (issue #21: a full disk left 0-byte metrics.json and a .tmp)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scones.core import files
from scones.core.errors import UsageError
from scones.core.failures import explain
from training import train

ROOT = Path(__file__).resolve().parents[2]


def full_disk_on_write(monkeypatch, module) -> None:
    """Every os.fdopen/open file of `module` fails its write with ENOSPC, as a full disk does."""

    class Full:
        def __init__(self, real):
            self.real = real

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.real.close()

        def write(self, _data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.real, name)

    if module is files:
        real_fdopen = os.fdopen
        monkeypatch.setattr(files.os, "fdopen", lambda *a, **k: Full(real_fdopen(*a, **k)))
    else:
        import builtins

        real_open = builtins.open
        monkeypatch.setattr(module, "open", lambda *a, **k: Full(real_open(*a, **k)), raising=False)


def test_write_atomic_replaces_the_file_whole(tmp_path):
    target = tmp_path / "metrics.json"
    files.write_atomic(target, "old")
    files.write_atomic(target, b"new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["metrics.json"]


def test_a_full_disk_keeps_the_previous_file_and_says_so_in_one_line(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    target.write_text('{"accuracy": 0.9}')
    full_disk_on_write(monkeypatch, files)
    with pytest.raises(files.DiskFullError) as raised:
        files.write_atomic(target, json.dumps({"accuracy": 0.95}))
    assert isinstance(raised.value, UsageError)
    assert str(target) in raised.value.line() and "\n" not in raised.value.line()
    assert target.read_text() == '{"accuracy": 0.9}'  # the previous file, intact
    assert os.listdir(tmp_path) == ["metrics.json"]  # no .tmp behind
    assert explain(raised.value, "local") is raised.value  # the CLI prints it as it is, exit 2


def test_another_write_error_removes_the_temporary_file_and_propagates(tmp_path, monkeypatch):
    monkeypatch.setattr(files.os, "replace", lambda *_a: (_ for _ in ()).throw(PermissionError(errno.EACCES, "no")))
    with pytest.raises(PermissionError):
        files.write_atomic(tmp_path / "report.json", "x")
    assert os.listdir(tmp_path) == []


def test_train_py_writes_its_artifacts_atomically_too(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    target.write_text("previous")
    full_disk_on_write(monkeypatch, train)
    with pytest.raises(OSError, match="No space"):
        train.write_atomic(target, "next")
    assert target.read_text() == "previous" and os.listdir(tmp_path) == ["metrics.json"]


CAN_MOUNT = (
    shutil.which("unshare")
    and subprocess.run(["unshare", "-rm", "true"], capture_output=True, check=False).returncode == 0
)
ON_TMPFS = """
import json, os, sys
from pathlib import Path
from scones.core import files
folder = Path(sys.argv[1])
files.write_atomic(folder / "statistics.json", "previous")
try:
    files.write_atomic(folder / "statistics.json", "x" * 200_000)  # more than the 64 KiB the folder holds
    print(json.dumps({"raised": None}))
except files.DiskFullError as exc:
    print(json.dumps({"raised": exc.line(), "kept": (folder / "statistics.json").read_text(),
                      "listing": sorted(os.listdir(folder))}))
"""


@pytest.mark.skipif(not CAN_MOUNT, reason="this machine refuses user namespaces (unshare -rm), so no tmpfs mount")
def test_a_really_full_tmpfs_keeps_the_previous_file(tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    mount = 'mount -t tmpfs -o size=64k tmpfs "$0" && exec "$@"'
    found = subprocess.run(
        ["unshare", "-rm", "sh", "-c", mount, str(folder), sys.executable, "-c", ON_TMPFS, str(folder)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    result = json.loads(found.stdout)
    assert result["raised"] and "no space left" in result["raised"] and "statistics.json" in result["raised"]
    assert result["kept"] == "previous" and result["listing"] == ["statistics.json"]
