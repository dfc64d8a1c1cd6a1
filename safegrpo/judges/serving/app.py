"""Scorer server: a judge behind ``POST /score`` and ``GET /health``.

The work of one request is bounded in its schema (``models.bounded_request``: ``max_items``
items, texts and prompts of ``max_chars``, ``max_total_chars`` in all -> 422 naming the limit)
and by ``max_body_bytes`` (-> 413 from the headers, ``guard.RequestGuard``, like a missing or
wrong API key -> 401). Requests are scored by ``scheduler.FairScheduler``: judge calls of at most
``max_batch`` texts / ``max_batch_chars`` characters, shared round-robin by the waiting requests,
in one judge thread, so a small request is never queued behind a big one. A request not scored
within ``timeout_s`` of its arrival gets 504, and one whose client disconnects is dropped; either
way its unscored texts are never computed. A body that is not JSON gets 415 (wrong content type)
or 400 (unparseable); 422 bodies never echo the request. Every status /score returns is declared
in the OpenAPI schema; ``GET /health`` shows the limits and the load.
``safegrpo serve scorer`` binds 127.0.0.1 unless told otherwise.
"""

import asyncio
import math
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import FastAPI, HTTPException, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.requests import Request

from safegrpo.judges.serving.guard import RequestGuard, small_validation_error
from safegrpo.judges.serving.models import (
    ErrorResponse,
    HealthResponse,
    ScoreResponse,
    ScorerLimits,
    ScorerLoad,
    bounded_request,
)
from safegrpo.judges.serving.scheduler import FairScheduler, Job


@dataclass(frozen=True)
class ScorerServerConfig:
    max_items: int = 1024
    """Most items (text + optional prompt) in one request."""
    max_chars: int = 20_000
    """Longest text or prompt accepted."""
    max_total_chars: int = 262_144
    """Most characters of texts and prompts in one request (the embedding_classifier judge
    scored 243k characters in 18 s on 2 CPU cores, issue 23)."""
    max_body_bytes: int = 1_048_576
    """Largest /score request body in bytes (413 above it, checked before the body is read)."""
    max_batch: int = 64
    """Most texts per judge call (taken round-robin from the waiting requests)."""
    max_batch_chars: int = 16_384
    """Most characters per judge call (a longer single item goes alone): bounds how long a small
    request waits for the call in progress (about 1.2 s of embedding_classifier at that rate)."""
    max_wait_ms: float = 5.0
    """How long an idle scorer waits for more requests before its first judge call."""
    timeout_s: float = 60.0
    """Per request, from its arrival; past it the request gets 504 and its unscored texts are
    dropped."""
    api_key: str | None = None
    """If set, /score requires it."""

    def __post_init__(self) -> None:
        for name in ("max_items", "max_chars", "max_total_chars", "max_body_bytes", "max_batch",
                     "max_batch_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"ScorerServerConfig.{name} must be >= 1")
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError("ScorerServerConfig.timeout_s must be a finite number > 0")
        if not (math.isfinite(self.max_wait_ms) and self.max_wait_ms >= 0):
            raise ValueError("ScorerServerConfig.max_wait_ms must be a finite number >= 0")
        if self.api_key is not None and not self.api_key:
            raise ValueError("ScorerServerConfig.api_key must not be empty (use None for no key)")

    def limits(self) -> ScorerLimits:
        return ScorerLimits(**{k: v for k, v in asdict(self).items()
                               if k in ScorerLimits.model_fields})


def _error_docs(cfg: ScorerServerConfig) -> dict[int | str, dict[str, Any]]:
    docs: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorResponse, "description": "the body is not valid JSON"},
        413: {"model": ErrorResponse, "description": "the body is over max_body_bytes"},
        415: {"model": ErrorResponse, "description": "the body is not sent as application/json"},
        500: {"model": ErrorResponse, "description": "the judge raised an error"},
        504: {"model": ErrorResponse, "description": "not scored within timeout_s"},
    }
    if cfg.api_key is not None:
        docs[401] = {"model": ErrorResponse, "description": "missing or wrong API key"}
    return docs


async def _disconnected(request: Request) -> None:
    """Returns when the client goes away (the body is already read: the next message is
    ``http.disconnect``, sent by the server when the connection drops or the response ends)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _outcome(job: Job, request: Request, timeout_s: float) -> list[float | None]:
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({job.future, watcher}, timeout=timeout_s,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        with suppress(asyncio.CancelledError):
            await watcher
    if job.future.done() and not job.future.cancelled():
        return job.future.result()  # the judge's exception, if it raised
    if watcher.done() and not watcher.cancelled():
        raise HTTPException(504, "client disconnected; its unscored texts were dropped")
    raise HTTPException(504, f"not scored within timeout_s={timeout_s}s; its unscored texts "
                             "were dropped")


def create_scorer_app(judge: Any, name: str, cfg: ScorerServerConfig | None = None) -> FastAPI:
    cfg = cfg or ScorerServerConfig()
    sched = FairScheduler(judge, cfg.max_batch, cfg.max_batch_chars, cfg.max_wait_ms)
    ScoreRequest = bounded_request(cfg.max_items, cfg.max_chars, cfg.max_total_chars)  # noqa: N806

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        sched.start()
        yield
        await sched.stop()

    app = FastAPI(title="safegrpo scorer", version="0.2.0", lifespan=lifespan)
    app.state.scheduler = sched
    app.add_middleware(RequestGuard, max_body_bytes=cfg.max_body_bytes, api_key=cfg.api_key)
    app.add_exception_handler(RequestValidationError, small_validation_error)
    # declared so the schema shows the auth; RequestGuard enforces it before the body is read
    auth = [Security(HTTPBearer(auto_error=False)),
            Security(APIKeyHeader(name="X-API-Key", auto_error=False))]

    @app.get("/health", response_model=HealthResponse)
    async def health() -> HealthResponse:
        load = ScorerLoad(active_requests=len(sched.jobs), queued_texts=sched.queued(),
                          scored_texts=sched.scored, dropped_texts=sched.dropped)
        return HealthResponse(status="ok", judge=name, limits=cfg.limits(), load=load)

    @app.post("/score", response_model=ScoreResponse, responses=_error_docs(cfg),
              dependencies=auth if cfg.api_key is not None else [])
    async def score(req: ScoreRequest, request: Request) -> ScoreResponse:
        if not req.items:
            return ScoreResponse(scores=[], judge=name)
        job = sched.submit([i.text for i in req.items], [i.prompt for i in req.items])
        try:
            scores = await _outcome(job, request, cfg.timeout_s)
        except HTTPException:
            raise
        except Exception as e:  # noqa: BLE001 - a judge failure is the server's error, said plainly
            raise HTTPException(500, f"judge failed: {type(e).__name__}: {e}") from None
        finally:
            sched.abandon(job)  # a no-op once answered; else its unscored texts are dropped
        return ScoreResponse(scores=scores, judge=name)

    return app
