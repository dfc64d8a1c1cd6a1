"""Scores arena steps off the event loop, micro-batched.

Steps from every session queue here; one worker task takes whatever has arrived (waiting up to
``max_wait_ms`` for more, at most ``max_batch``) and runs the reward on it in a single judge
thread, so the event loop keeps answering resets and health checks while judges run, and the
judges (tokenizers included) are never called from two threads at once. Rows are scored
independently (no ``group_ids``), so a batch mixes sessions without cross-talk. If a batched
call raises, its steps are rescored one by one so only the offending step fails.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from safegrpo.envs.moderation.server.environment import (
    EnvError,
    ScoredRow,
    StepJob,
    score_rows,
)


@dataclass(eq=False)
class _Item:
    reward: Any
    job: StepJob
    future: asyncio.Future
    started: bool = False
    cancelled: bool = False


class StepBatcher:
    def __init__(self, max_batch: int = 64, max_wait_ms: float = 2.0):
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError("max_batch must be >= 1 and max_wait_ms >= 0")
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arena-judge")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task | None = None
        self.calls = 0  # reward calls made (for tests and /metadata)

    async def score(self, reward: Any, job: StepJob, timeout_s: float | None = None) -> ScoredRow:
        """Queue ``job`` and wait for its row. If scoring has not *started* within ``timeout_s``
        the step is withdrawn (429: busy, retry); once started it runs to the end (judges
        cannot be stopped)."""
        loop = asyncio.get_running_loop()
        self._ensure_worker(loop)
        item = _Item(reward, job, loop.create_future())
        self._queue.put_nowait(item)
        if timeout_s is None:
            return await item.future
        try:
            return await asyncio.wait_for(asyncio.shield(item.future), timeout_s)
        except TimeoutError:
            if item.started:
                return await item.future
            item.cancelled = True
            raise EnvError(
                429,
                f"arena busy: scoring did not start within timeout_s={timeout_s:g}; "
                "the episode is unchanged, retry",
            ) from None

    def _ensure_worker(self, loop: asyncio.AbstractEventLoop) -> None:
        # a new event loop (e.g. a second TestClient block) gets a fresh queue and worker
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop, self._queue = loop, asyncio.Queue()
            self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                    continue
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except TimeoutError:
                    break
            live = [it for it in batch if not it.cancelled]
            for it in live:
                it.started = True
            groups: dict[int, list[_Item]] = {}
            for it in live:
                groups.setdefault(id(it.reward), []).append(it)
            for items in groups.values():
                await self._score(loop, items)

    async def _score(self, loop: asyncio.AbstractEventLoop, items: list[_Item]) -> None:
        try:
            rows = await loop.run_in_executor(self._executor, self._call, items)
        except Exception as e:  # noqa: BLE001 - isolate the step that broke the batch
            if len(items) > 1:
                for it in items:
                    await self._score(loop, [it])
                return
            _settle(items[0].future, exc=_as_client_error(e))
            return
        for it, row in zip(items, rows, strict=True):
            _settle(it.future, row=row)

    def _call(self, items: list[_Item]) -> list[ScoredRow]:
        self.calls += 1
        return score_rows(
            items[0].reward, [it.job.info for it in items], [it.job.text for it in items]
        )

    def stop(self) -> None:
        """Stop the worker of the current loop (the judge thread stays for a later loop)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None


def _as_client_error(e: Exception) -> Exception:
    # hostile text (deep nesting, huge numbers) can break a judge's parser: the step is refused
    # with a 422 and the episode stays open; anything else is a server fault (500)
    if isinstance(e, RecursionError | ValueError):
        return EnvError(
            422,
            f"action could not be scored ({type(e).__name__}): send a shorter "
            "or simpler completion",
        )
    return e


def _settle(
    fut: asyncio.Future, row: ScoredRow | None = None, exc: Exception | None = None
) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(row)
