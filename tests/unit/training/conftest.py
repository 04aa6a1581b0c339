from __future__ import annotations

from pathlib import Path

import pytest

from scones.data import staging


@pytest.fixture(scope="session")
def tiny_staged(tmp_path_factory) -> Path:
    """A small synthetic bicycle/motorcycle set in the staged layout (30 train + 10 test per class)."""
    root = tmp_path_factory.mktemp("tiny")
    classes = ["bicycle", "motorcycle"]
    source = staging.resolve_source(
        "synthetic", classes, seed=1, train_per_class=30, test_per_class=10, cache_dir=root / "cache"
    )
    workdir = root / "staged"
    staging.build(source, classes, workdir)
    return workdir
