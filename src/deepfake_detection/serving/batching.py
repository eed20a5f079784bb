"""Requests that arrive together are scored together, off the event loop.

One worker thread runs the model, so PyTorch and ONNX Runtime each get the whole CPU for one
batch at a time. While it works, new requests queue; the next batch takes all of them (up to
`max_batch` images). A lone request waits for nobody.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch

from deepfake_detection.detector.formats import Runner

T = TypeVar("T")
log = logging.getLogger(__name__)


class BatchScorer:
    def __init__(self, score: Runner, max_batch: int) -> None:
        self._score = score
        self.max_batch = max_batch
        self.executor: ThreadPoolExecutor | None = None
        self._queue: asyncio.Queue[tuple[torch.Tensor, asyncio.Future]] | None = None
        self._worker: asyncio.Task | None = None

    async def start(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        self._queue = self._worker = self.executor = None

    async def score(self, batch: torch.Tensor) -> torch.Tensor:
        """P(Fake) of each image of `batch`, scored with whatever else is waiting."""
        if self._queue is None:
            raise RuntimeError("BatchScorer.start() was not called")
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._queue.put((batch, future))
        return await future

    async def run_exclusive(self, work: Callable[..., T], *args: Any) -> T:
        """Run `work` on the model's thread, between batches (Grad-CAM uses the model too)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, work, *args)

    async def _run(self) -> None:
        while True:
            try:
                await self._run_one_batch()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one bad batch end the loop for everyone
                log.exception("the batch scorer failed; it goes on with the next batch")

    async def _run_one_batch(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        items = [await self._queue.get()]
        size = len(items[0][0])
        while size < self.max_batch and not self._queue.empty():
            item = self._queue.get_nowait()
            items.append(item)
            size += len(item[0])
        items = [(batch, future) for batch, future in items if not future.done()]
        if not items:
            return
        try:
            probs = await loop.run_in_executor(
                self.executor, self._score, torch.cat([batch for batch, _ in items])
            )
        except Exception as err:  # every waiting request learns of it
            for _, future in items:
                if not future.done():
                    future.set_exception(err)
            return
        start = 0
        for batch, future in items:
            if not future.done():
                future.set_result(probs[start : start + len(batch)])
            start += len(batch)
