"""Dynamic micro-batching: concurrent requests are grouped into one model call.

A batch takes every queued image at once. It waits for more (at most `max_wait_ms` after its first image)
only while more requests are known to be on their way (`expected()`: requests accepted but not yet answered),
so a lone request never waits and concurrent ones are grouped. It closes at `max_batch_size`. Batches run on
a worker thread, so the event loop keeps accepting requests meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class DynamicBatcher:
    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        max_batch_size: int,
        max_wait_ms: float,
        expected: Callable[[], int] | None = None,
    ) -> None:
        if max_batch_size < 1 or max_wait_ms < 0:
            raise ValueError("max_batch_size must be >= 1 and max_wait_ms >= 0")
        self.predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self.expected = expected or (lambda: self.max_batch_size)  # unknown: always wait up to max_wait_ms
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self.batches = 0
        self.images = 0

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.executor.shutdown(wait=True)

    async def submit(self, image: np.ndarray) -> np.ndarray:
        """One decoded image (H×W×3) → its probability row."""
        assert self.queue is not None, "start() first"
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((image, future))
        return await future

    async def _run(self) -> None:
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_batch_size:
                if not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.expected() <= len(batch):
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), remaining))
                except TimeoutError:
                    break
            images = np.stack([image for image, _ in batch])
            try:
                probs = await loop.run_in_executor(self.executor, self.predict, images)
            except Exception as exc:  # a failed batch fails each of its requests, not the server
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batches += 1
            self.images += len(batch)
            for (_, future), row in zip(batch, probs, strict=True):
                if not future.done():
                    future.set_result(row)
