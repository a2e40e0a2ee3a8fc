"""The service's micro-batching: validated queries wait on an asyncio queue; each of `threads` workers takes
everything waiting (up to `max_batch`) and answers it with one `Recommender.recommend_many` in a bounded thread
pool, so concurrent requests share one forward pass instead of competing for the cores."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from seqrec.recommend import Query, Recommendation, Recommender


class Batcher:
    """Queue of validated queries answered in batches by a bounded pool of scoring threads."""

    def __init__(self, recommender: Recommender, max_batch: int, threads: int) -> None:
        self.recommender = recommender
        self.max_batch = max(1, int(max_batch))
        self.threads = max(1, int(threads))
        self.pool: ThreadPoolExecutor | None = None
        self.queue: asyncio.Queue[tuple[Query, asyncio.Future[Recommendation]]] = asyncio.Queue()
        self.workers: list[asyncio.Task[None]] = []

    async def start(self) -> None:  # a new queue: each start may run on another event loop
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="seqrec-score")
        self.queue = asyncio.Queue()
        self.workers = [asyncio.create_task(self._work()) for _ in range(self.threads)]

    async def stop(self) -> None:
        for task in self.workers:
            task.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    async def submit(self, query: Query) -> Recommendation:
        future: asyncio.Future[Recommendation] = asyncio.get_running_loop().create_future()
        await self.queue.put((query, future))
        return await future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.max_batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                answers = await loop.run_in_executor(self.pool, self.recommender.recommend_many,
                                                     [query for query, _ in batch])
            except Exception as error:  # noqa: BLE001 - handed to every waiting request
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
            else:
                for (_, future), answer in zip(batch, answers):
                    if not future.done():
                        future.set_result(answer)
