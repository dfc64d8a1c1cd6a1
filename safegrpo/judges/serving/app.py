"""Scorer server: a judge behind ``POST /score`` and ``GET /health``.

Concurrent requests are micro-batched: requests arriving within ``max_wait_ms`` are scored in one
judge call of up to ``max_batch`` texts. Requests are bounded (``max_items`` texts,
``max_chars`` per text -> 413), each judge call has a ``timeout_s`` (-> 504), and an optional
API key is checked on /score (``Authorization: Bearer <key>`` or ``X-API-Key`` -> 401).
``safegrpo serve scorer`` binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import asyncio
import hmac
import math
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Header, HTTPException

from safegrpo.judges.serving.models import ScoreRequest, ScoreResponse


@dataclass(frozen=True)
class ScorerServerConfig:
    max_items: int = 1024
    """Most texts in one request."""
    max_chars: int = 20_000
    """Longest text accepted."""
    max_batch: int = 256
    """Most texts per judge call (across merged requests)."""
    max_wait_ms: float = 5.0
    """How long to wait for more requests before scoring a batch."""
    timeout_s: float = 60.0
    """Per judge call; past it the waiting requests get 504."""
    api_key: str | None = None
    """If set, /score requires it."""


class MicroBatcher:
    """Merges concurrent score requests into judge calls of at most ``max_batch`` texts."""

    def __init__(self, judge: Any, cfg: ScorerServerConfig):
        self.judge, self.cfg = judge, cfg
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None
        self.calls = 0

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()

    async def submit(self, texts: list[str], prompts: list[str] | None) -> list[float | None]:
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((texts, prompts, fut))
        return await fut

    async def _run(self) -> None:
        while True:
            items = [await self.queue.get()]
            size = len(items[0][0])
            deadline = asyncio.get_running_loop().time() + self.cfg.max_wait_ms / 1000
            while size < self.cfg.max_batch:
                left = deadline - asyncio.get_running_loop().time()
                try:
                    nxt = await asyncio.wait_for(self.queue.get(), timeout=max(left, 0))
                except TimeoutError:
                    break
                items.append(nxt)
                size += len(nxt[0])
            await self._score(items)

    async def _score(self, items: list) -> None:
        texts = [t for it in items for t in it[0]]
        has_prompts = any(it[1] is not None for it in items)
        prompts = [p for it in items for p in (it[1] or [""] * len(it[0]))] if has_prompts else None
        try:
            scores = await asyncio.wait_for(asyncio.to_thread(self._call, texts, prompts), self.cfg.timeout_s)
        except Exception as e:  # noqa: BLE001 - every waiting request must get an answer
            for it in items:
                if not it[2].done():
                    it[2].set_exception(e)
            return
        i = 0
        for t, _, fut in items:
            if not fut.done():
                fut.set_result(scores[i:i + len(t)])
            i += len(t)

    def _call(self, texts: list[str], prompts: list[str] | None) -> list[float | None]:
        self.calls += 1
        out: list[float | None] = []
        for i in range(0, len(texts), self.cfg.max_batch):
            chunk = texts[i:i + self.cfg.max_batch]
            kw = {"prompts": prompts[i:i + self.cfg.max_batch]} if prompts is not None and _takes_prompts(self.judge) else {}
            vals = self.judge.score(chunk, **kw)
            out += [None if math.isnan(float(v)) else float(v) for v in vals]
        return out


def _takes_prompts(judge: Any) -> bool:
    import inspect

    return "prompts" in inspect.signature(judge.score).parameters


def create_scorer_app(judge: Any, name: str, cfg: ScorerServerConfig | None = None) -> FastAPI:
    cfg = cfg or ScorerServerConfig()
    batcher = MicroBatcher(judge, cfg)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="safegrpo scorer", version="0.1.0", lifespan=lifespan)
    app.state.batcher = batcher

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "judge": name}

    @app.post("/score", response_model=ScoreResponse)
    async def score(req: ScoreRequest, authorization: str | None = Header(default=None),
                    x_api_key: str | None = Header(default=None)) -> ScoreResponse:
        if cfg.api_key is not None:
            given = x_api_key or (authorization[7:] if authorization and authorization.startswith("Bearer ") else "")
            if not hmac.compare_digest(given.encode(), cfg.api_key.encode()):
                raise HTTPException(401, "missing or wrong API key")
        if len(req.texts) > cfg.max_items:
            raise HTTPException(413, f"{len(req.texts)} texts; at most {cfg.max_items} per request")
        longest = max((len(t) for t in req.texts), default=0)
        if longest > cfg.max_chars:
            raise HTTPException(413, f"a text has {longest} characters; at most {cfg.max_chars}")
        if not req.texts:
            return ScoreResponse(scores=[], judge=name)
        try:
            scores = await batcher.submit(req.texts, req.prompts)
        except TimeoutError:
            raise HTTPException(504, f"judge took longer than {cfg.timeout_s}s") from None
        return ScoreResponse(scores=scores, judge=name)

    return app
