"""Helpers shared by tests (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ROOT / "training" / "train.py"
TINY = ["--widths", "8,16,16", "--threads", "1"]


def run_train(staged: Path, model_dir: Path, *args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """training/train.py in a subprocess with SM_* variables, as SageMaker runs it."""
    env = dict(
        os.environ,
        SM_CHANNEL_TRAIN=str(staged / "train"),
        SM_CHANNEL_TEST=str(staged / "test"),
        SM_MODEL_DIR=str(model_dir),
        SM_OUTPUT_DIR=str(model_dir.parent / "output"),
    )
    env.update(env_extra or {})
    (model_dir.parent / "output").mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, str(TRAIN), *args], env=env, capture_output=True, text=True, timeout=600)


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A few hundred bytes that declare a 2.5-gigapixel image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b"")
    )
