"""Helpers shared by tests (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import os
import subprocess
import sys
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
