"""A local cloud for a benchmark: the running one (`--use-running`) or a fresh one on a free port."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scones import localcloud
from scones.core import aws, settings


@contextlib.contextmanager
def local_cloud(use_running: bool = False) -> Iterator[str]:
    if use_running:
        running = localcloud.status()
        if not running.running:
            raise SystemExit("no local cloud runs: `make up` first or drop --use-running")
        context = contextlib.nullcontext(running)
    else:
        context = localcloud.ephemeral("scones-bench-")
    with context as running:
        os.environ[settings.AWS_ENDPOINT_URL] = running.url
        aws.reset()
        yield running.url
