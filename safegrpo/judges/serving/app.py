"""Scorer server: a judge behind ``POST /score`` and ``GET /health``.

Concurrent requests are micro-batched: requests arriving within ``max_wait_ms`` are scored in one
judge call of up to ``max_batch`` texts, in a worker thread (the event loop keeps serving other
clients while a judge runs). Requests are bounded: ``max_body_bytes`` in total (-> 413),
``max_items`` texts and prompts of ``max_chars`` each (stated in the OpenAPI schema -> 422).
Each judge call has a ``timeout_s`` (-> 504), and an optional API key is checked on /score
(``Authorization: Bearer <key>`` and/or ``X-API-Key``; a missing or wrong one -> 401).

The key and the declared ``Content-Length`` are checked by an ASGI guard *before any body byte
is read*: an unauthenticated or oversized upload is answered at once (a client that sends
``Expect: 100-continue`` never uploads it), and a body without a length is cut off at the bound.
Keys are compared with ``hmac.compare_digest`` (constant time). A body that is not JSON gets 415
(wrong content type) or 400 (unparseable). Every status /score returns is declared in the OpenAPI
schema. (FastAPI's own ``max_body_size`` is not used: the key must be checked first, and it needs
FastAPI >= 0.16x.)
``safegrpo serve scorer`` binds 127.0.0.1 unless told otherwise.
"""

import asyncio
import hmac
import inspect
import json
import math
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException, Security
from fastapi.security import APIKeyHeader, HTTPBearer

from safegrpo.judges.serving.models import ErrorResponse, ScoreResponse, bounded_request


@dataclass(frozen=True)
class ScorerServerConfig:
    max_items: int = 1024
    """Most texts in one request."""
    max_chars: int = 20_000
    """Longest text accepted."""
    max_body_bytes: int = 1_048_576
    """Largest /score request body in bytes (413 above it, checked before the body is read)."""
    max_batch: int = 256
    """Most texts per judge call (across merged requests)."""
    max_wait_ms: float = 5.0
    """How long to wait for more requests before scoring a batch."""
    timeout_s: float = 60.0
    """Per judge call; past it the waiting requests get 504."""
    api_key: str | None = None
    """If set, /score requires it."""

    def __post_init__(self) -> None:
        for name in ("max_items", "max_chars", "max_body_bytes", "max_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"ScorerServerConfig.{name} must be >= 1")
        if self.timeout_s <= 0 or self.max_wait_ms < 0:
            raise ValueError("ScorerServerConfig: timeout_s must be > 0 and max_wait_ms >= 0")
        if self.api_key is not None and not self.api_key:
            raise ValueError("ScorerServerConfig.api_key must not be empty (use None for no key)")


class MicroBatcher:
    """Merges concurrent score requests into judge calls of at most ``max_batch`` texts."""

    def __init__(self, judge: Any, cfg: ScorerServerConfig):
        self.judge, self.cfg = judge, cfg
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None
        self.calls = 0

    def start(self) -> None:
        self.queue = asyncio.Queue()  # bound to the loop that runs this lifespan
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
            scores = await asyncio.wait_for(asyncio.to_thread(self._call, texts, prompts),
                                            self.cfg.timeout_s)
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
            kw = ({"prompts": prompts[i:i + self.cfg.max_batch]}
                  if prompts is not None and _takes_prompts(self.judge) else {})
            vals = self.judge.score(chunk, **kw)
            out += [None if math.isnan(float(v)) else float(v) for v in vals]
        return out


def _takes_prompts(judge: Any) -> bool:
    return "prompts" in inspect.signature(judge.score).parameters


def _key_ok(headers: dict[str, str], key: str) -> bool:
    """At least one of ``X-API-Key`` / ``Authorization: Bearer`` is sent and every one sent
    holds the key (a wrong credential is never excused by a right one); constant-time compares."""
    want, sent = key.encode(), []
    if "x-api-key" in headers:
        sent.append(headers["x-api-key"])
    if "authorization" in headers:
        auth = headers["authorization"]
        sent.append(auth[7:] if auth[:7].lower() == "bearer " else "")
    return bool(sent) and all([hmac.compare_digest(s.encode(), want) for s in sent])


async def _reply(send: Any, status: int, detail: str, extra: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware in front of ``POST /score``: the API key, then the declared
    Content-Length, then a read of at most ``max_body_bytes`` (the app gets the body replayed).
    Nothing is read from an unauthenticated or oversized request."""

    def __init__(self, app: Any, cfg: ScorerServerConfig):
        self.app, self.cfg = app, cfg

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/score" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.cfg.api_key is not None and not _key_ok(headers, self.cfg.api_key):
            return await _reply(send, 401, "missing or wrong API key",
                                {"www-authenticate": "Bearer"})
        cap = self.cfg.max_body_bytes
        too_big = f"request body over {cap} bytes; split the texts over several requests"
        ctype = headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if ctype != "application/json" and not ctype.endswith("+json"):
            return await _reply(send, 415, f"content type {ctype!r}; send application/json")
        length = headers.get("content-length", "0")
        if not length.isdigit():  # servers (h11, httptools) already refuse this
            return await _reply(send, 400, "Content-Length is not a number")
        if int(length) > cap:
            return await _reply(send, 413, too_big)
        body, more = bytearray(), True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return None
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
            if len(body) > cap:
                return await _reply(send, 413, too_big)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        return await self.app(scope, replay, send)


def _error_docs(cfg: ScorerServerConfig) -> dict[int | str, dict[str, Any]]:
    docs: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorResponse, "description": "the body is not valid JSON"},
        413: {"model": ErrorResponse, "description": "the body is over max_body_bytes"},
        415: {"model": ErrorResponse, "description": "the body is not sent as application/json"},
        500: {"model": ErrorResponse, "description": "the judge raised an error"},
        504: {"model": ErrorResponse, "description": "the judge took longer than timeout_s"},
    }
    if cfg.api_key is not None:
        docs[401] = {"model": ErrorResponse, "description": "missing or wrong API key"}
    return docs


def create_scorer_app(judge: Any, name: str, cfg: ScorerServerConfig | None = None) -> FastAPI:
    cfg = cfg or ScorerServerConfig()
    batcher = MicroBatcher(judge, cfg)
    Request = bounded_request(cfg.max_items, cfg.max_chars)  # noqa: N806 - a class

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="safegrpo scorer", version="0.1.0", lifespan=lifespan)
    app.state.batcher = batcher
    app.add_middleware(RequestGuard, cfg=cfg)
    # declared so the schema shows the auth; RequestGuard enforces it before the body is read
    auth = [Security(HTTPBearer(auto_error=False)),
            Security(APIKeyHeader(name="X-API-Key", auto_error=False))]

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "judge": name}

    @app.post("/score", response_model=ScoreResponse, responses=_error_docs(cfg),
              dependencies=auth if cfg.api_key is not None else [])
    async def score(req: Request) -> ScoreResponse:
        if not req.texts:
            return ScoreResponse(scores=[], judge=name)
        try:
            scores = await batcher.submit(req.texts, req.prompts)
        except TimeoutError:
            raise HTTPException(504, f"judge took longer than {cfg.timeout_s}s") from None
        except Exception as e:  # noqa: BLE001 - a judge failure is the server's error, said plainly
            raise HTTPException(500, f"judge failed: {type(e).__name__}: {e}") from None
        return ScoreResponse(scores=scores, judge=name)

    return app
