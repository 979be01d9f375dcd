"""Micro-batching for ``study serve``: concurrent requests' rows scored together by pre-compiled functions.

* :class:`BucketedScorer` pads a batch of rows to the next *shape bucket* (powers of two up to
  ``max_batch_size``, plus ``max_batch_size`` itself) and calls that bucket's function, compiled once by
  :meth:`BucketedScorer.warm_up`; nothing is compiled on the request path afterwards.
* :class:`MicroBatcher` gathers rows from an asyncio queue until ``max_batch_size`` rows are waiting or
  ``max_wait_ms`` has passed since the first one, and scores the batch on one worker thread, so the event
  loop keeps accepting and parsing requests meanwhile. ``max_batch_size=1`` scores one row at a time.

Usage::

    scorer = BucketedScorer(recommender, max_batch_size=64)
    scorer.warm_up()
    batcher = MicroBatcher(scorer.score, max_batch_size=64, max_wait_ms=5)
    batcher.start()
    ids, scores = await batcher.submit((row, query_index))   # [top_k] int32, [top_k] float32
    await batcher.drain()
"""

import asyncio
import concurrent.futures
import time
from typing import Callable, Sequence

import jax
import numpy as np

from study.serve import serving_artifact

MAX_BATCHES_IN_FLIGHT = 2


def bucket_sizes(max_batch_size: int) -> tuple[int, ...]:
    """Padded batch sizes compiled for ``max_batch_size``: powers of two below it, then it.

    ``bucket_sizes(48) == (1, 2, 4, 8, 16, 32, 48)``."""
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    sizes, size = [], 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    return (*sizes, max_batch_size)


class BucketedScorer:
    """Scores ``[(row, query_index)]`` with one compiled function per padded batch size."""

    def __init__(self, recommender: serving_artifact.Recommender, max_batch_size: int):
        self.recommender = recommender
        fixed = recommender.batch_size  # a fixed-batch artifact has exactly one shape
        self.buckets = (int(fixed),) if fixed else bucket_sizes(max_batch_size)
        self._compiled: dict[int, Callable] = {}

    def _specs(self, size: int) -> dict:
        row_shape = jax.ShapeDtypeStruct((size, self.recommender.row_length), np.int32)
        specs = {name: row_shape for name in serving_artifact.SEQUENCE_INPUTS}
        specs["grade"] = jax.ShapeDtypeStruct((size,), np.int32)
        if self.recommender.query_exported is not None:
            specs["query_index"] = jax.ShapeDtypeStruct((size,), np.int32)
        return specs

    def warm_up(self) -> dict[int, float]:
        """Compiles every bucket; returns the seconds each took. Uses the artifact's query function (ranks the
        query position only) when it has one, else the every-position function."""
        seconds = {}
        exported = self.recommender.query_exported or self.recommender.exported
        call = jax.jit(exported.call)
        for size in self.buckets:
            start = time.perf_counter()
            self._compiled[size] = call.lower(self._specs(size)).compile()
            seconds[size] = time.perf_counter() - start
        return seconds

    @property
    def ready(self) -> bool:
        return len(self._compiled) == len(self.buckets)

    def score(self, prepared: Sequence[tuple[dict, int]]) -> tuple[np.ndarray, np.ndarray]:
        """``[(row, query_index)]`` -> top-k at each query: ``ids [n, top_k] int32``, ``scores [n, top_k] float32``.

        Rows beyond the largest bucket are scored in several calls."""
        largest = self.buckets[-1]
        all_ids, all_scores = [], []
        for start in range(0, len(prepared), largest):
            chunk = list(prepared[start : start + largest])
            size = next(bucket for bucket in self.buckets if bucket >= len(chunk))
            rows = [row for row, _ in chunk] + [chunk[-1][0]] * (size - len(chunk))  # pad with a real row
            batch = {name: np.stack([row[name] for row in rows]) for name in serving_artifact.SEQUENCE_INPUTS}
            batch["grade"] = np.asarray([row["grade"] for row in rows], np.int32)
            queries = np.asarray([query for _, query in chunk] + [chunk[-1][1]] * (size - len(chunk)), np.int32)
            if self.recommender.query_exported is not None:
                outputs = self._compiled[size](dict(batch, query_index=queries))
                ids, scores = np.asarray(outputs["top_ids"]), np.asarray(outputs["top_scores"])
            else:
                outputs = self._compiled[size](batch)
                ids = np.asarray(outputs["top_ids"])[np.arange(size), queries]
                scores = np.asarray(outputs["top_scores"])[np.arange(size), queries]
            all_ids.append(ids[: len(chunk)])
            all_scores.append(scores[: len(chunk)])
        return np.concatenate(all_ids), np.concatenate(all_scores)


class MicroBatcher:
    """Gathers submitted items into batches for ``score_batch(items) -> (ids [n, ...], scores [n, ...])``.

    ``on_batch(size, seconds)`` is called after each scored batch (metrics)."""

    def __init__(self, score_batch: Callable, max_batch_size: int, max_wait_ms: float,
                 on_batch: Callable[[int, float], None] | None = None):
        if max_batch_size < 1 or max_wait_ms < 0:
            raise ValueError(f"need max_batch_size >= 1 and max_wait_ms >= 0, got {max_batch_size}, {max_wait_ms}")
        self.score_batch, self.max_batch_size, self.max_wait_s = score_batch, max_batch_size, max_wait_ms / 1000
        self.on_batch = on_batch
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        # One scoring thread: batches run one after another, while the event loop gathers the next one.
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorer")
        self.accepting = False

    def start(self) -> None:
        """Starts the gathering task on the running event loop."""
        self._queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._run())
        self.accepting = True

    def pending(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def submit(self, item):
        """Queues ``item``; returns its ``(ids, scores)`` once its batch is scored."""
        if not self.accepting:
            raise RuntimeError("the batcher is shutting down")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        return await future

    async def drain(self) -> None:
        """Stops accepting items, scores every queued one, then stops the worker and its thread."""
        self.accepting = False
        if self._worker is not None:
            self._queue.put_nowait(None)  # after every queued item
            await self._worker
        self._executor.shutdown(wait=True)

    async def _gather(self, first) -> tuple[list, bool]:
        """The batch that starts with ``first``; whether the stop marker was reached."""
        loop = asyncio.get_running_loop()
        batch, deadline = [first], loop.time() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            try:
                entry = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    entry = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            if entry is None:
                return batch, True
            batch.append(entry)
        return batch, False

    async def _run(self) -> None:
        # Two batches in flight: one scoring on the thread while the next is gathered and queued behind it,
        # so parsing requests and scoring overlap even when every client waits on the same batch.
        in_flight = asyncio.Semaphore(MAX_BATCHES_IN_FLIGHT)
        scoring = set()
        stop = False
        while not stop:
            await in_flight.acquire()
            first = await self._queue.get()
            if first is None:
                break
            batch, stop = await self._gather(first)
            task = asyncio.get_running_loop().create_task(self._score(batch, in_flight))
            scoring.add(task)
            task.add_done_callback(scoring.discard)
        await asyncio.gather(*scoring)

    async def _score(self, batch: list, in_flight: asyncio.Semaphore) -> None:
        """Scores one gathered batch on the worker thread and resolves its futures."""
        start = time.perf_counter()
        try:
            ids, scores = await asyncio.get_running_loop().run_in_executor(
                self._executor, self.score_batch, [item for item, _ in batch])
        except Exception as error:  # noqa: BLE001 - handed to every waiting request, never lost
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        finally:
            in_flight.release()
        if self.on_batch is not None:
            self.on_batch(len(batch), time.perf_counter() - start)
        for n, (_, future) in enumerate(batch):
            if not future.done():  # a request whose client went away is cancelled
                future.set_result((ids[n], scores[n]))
