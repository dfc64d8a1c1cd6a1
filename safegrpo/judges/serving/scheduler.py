"""Fair scheduling of score requests over one judge thread.

Every request is a job holding its unscored items. A judge call takes items from the active jobs
round-robin, one item per job per turn, until it holds ``max_batch`` texts or ``max_batch_chars``
characters (texts + prompts; a single longer item goes alone). So a small request sent while a
big one is being scored waits for at most the judge call in progress and then shares the next
one: its wait is bounded by two judge calls, not by the big request's size. Concurrent small
requests still merge into one call (micro-batching), and an idle scheduler waits ``max_wait_ms``
for more requests before its first call.

The judge runs in one dedicated thread (a judge and its tokenizer are never called from two
threads; torch already spreads one call over the cores), so the thread count never grows with
the load. A job that is abandoned (its request timed out or its client disconnected) leaves the
queue at once: its unscored items are never computed, only the judge call in progress finishes.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


def plan_batch(costs: Sequence[Sequence[int]], max_items: int,
               max_chars: int) -> tuple[list[int], int]:
    """How many items to take from the front of each queue for one judge call.

    ``costs[j][i]``: characters of queue j's i-th waiting item, queues in round-robin order.
    Items are taken one per queue per turn while the call stays within ``max_items`` items and
    ``max_chars`` characters; a queue whose next item does not fit gives no more this call (its
    items keep their order). The first item always goes, however long. Returns (taken[j], the
    queue the next call starts with: the one after the queue that gave the last item).
    """
    taken, items, chars, last = [0] * len(costs), 0, 0, -1
    open_ = [j for j, c in enumerate(costs) if c]
    while open_ and items < max_items:
        still = []
        for j in open_:
            if items >= max_items:
                break
            cost = costs[j][taken[j]]
            if items and chars + cost > max_chars:
                continue  # this queue is closed for this call
            taken[j] += 1
            items, chars, last = items + 1, chars + cost, j
            if taken[j] < len(costs[j]):
                still.append(j)
        open_ = still
    return taken, (last + 1) % max(len(costs), 1)


@dataclass(eq=False)
class Job:
    """One request's items; ``future`` gets the scores (one per item, in order)."""

    texts: list[str]
    prompts: list[str | None]
    future: asyncio.Future
    sent: int = 0  # items handed to the judge so far (the rest wait, in order)
    back: int = 0  # items whose score came back
    scores: list[float | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.scores = [None] * len(self.texts)

    def cost(self, i: int) -> int:
        return len(self.texts[i]) + len(self.prompts[i] or "")


class FairScheduler:
    """Round-robin judge calls over the waiting jobs (see the module docstring)."""

    def __init__(self, judge: Any, max_batch: int, max_batch_chars: int, max_wait_ms: float):
        self.judge, self.max_batch, self.max_batch_chars = judge, max_batch, max_batch_chars
        self.max_wait_s = max_wait_ms / 1000
        self.takes_prompts = "prompts" in inspect.signature(judge.score).parameters
        self.jobs: deque[Job] = deque()
        self.calls = self.scored = self.dropped = 0
        self.task: asyncio.Task | None = None
        self.pool: ThreadPoolExecutor | None = None
        self.wake = asyncio.Event()

    def start(self) -> None:
        self.wake = asyncio.Event()  # bound to the loop that runs this lifespan
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorer-judge")
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
        if self.pool:
            self.pool.shutdown(wait=False, cancel_futures=True)

    def submit(self, texts: list[str], prompts: list[str | None]) -> Job:
        job = Job(texts, prompts, asyncio.get_running_loop().create_future())
        self.jobs.append(job)
        self.wake.set()
        return job

    def abandon(self, job: Job) -> None:
        """Drop a job's unscored items (no-op once it is answered)."""
        if job in self.jobs:
            self.jobs.remove(job)
            self.dropped += len(job.texts) - job.sent
        if not job.future.done():
            job.future.cancel()

    def queued(self) -> int:
        return sum(len(j.texts) - j.sent for j in self.jobs)

    async def _run(self) -> None:
        while True:
            if not self.jobs:
                self.wake.clear()
                await self.wake.wait()
                if self.max_wait_s and self.queued() < self.max_batch:
                    await asyncio.sleep(self.max_wait_s)  # let concurrent requests join
            batch = self._take()
            if batch:
                await self._score(batch)

    def _take(self) -> list[tuple[Job, int]]:
        """The next judge call's items as (job, index); rotates the queue so the next call
        starts with the job after the one that gave this call's last item."""
        jobs = list(self.jobs)
        costs = [[j.cost(i) for i in range(j.sent, min(len(j.texts), j.sent + self.max_batch))]
                 for j in jobs]
        taken, nxt = plan_batch(costs, self.max_batch, self.max_batch_chars)
        batch = [(j, j.sent + k) for j, n in zip(jobs, taken, strict=True) for k in range(n)]
        for j, n in zip(jobs, taken, strict=True):
            j.sent += n
        self.jobs = deque(j for j in jobs[nxt:] + jobs[:nxt] if j.sent < len(j.texts))
        return batch

    async def _score(self, batch: list[tuple[Job, int]]) -> None:
        texts = [j.texts[i] for j, i in batch]
        prompts = [j.prompts[i] for j, i in batch]
        loop = asyncio.get_running_loop()
        try:
            vals = await loop.run_in_executor(self.pool, self._call, texts, prompts)
        except Exception as e:  # noqa: BLE001 - every job in this call must get an answer
            for j in {j for j, _ in batch}:
                if not j.future.done():
                    j.future.set_exception(e)
                self.abandon(j)  # its other items are not scored either
            return
        self.scored += len(batch)
        for (j, i), v in zip(batch, vals, strict=True):
            j.scores[i], j.back = v, j.back + 1
            if j.back == len(j.texts) and not j.future.done():
                j.future.set_result(j.scores)

    def _call(self, texts: list[str], prompts: list[str | None]) -> list[float | None]:
        self.calls += 1
        kw = ({"prompts": [p or "" for p in prompts]}
              if self.takes_prompts and any(p is not None for p in prompts) else {})
        vals = self.judge.score(texts, **kw)
        if len(vals) != len(texts):
            raise RuntimeError(f"judge returned {len(vals)} scores for {len(texts)} texts")
        return [None if math.isnan(float(v)) else float(v) for v in vals]
