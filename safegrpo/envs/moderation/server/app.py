"""OpenEnv HTTP + WebSocket server of the moderation arena (OpenEnv runtime API 1.x).

HTTP: GET /health /schema /metadata /state, POST /reset /step /mcp; WS /ws (see ``ws.py``).
Request and reply bodies are OpenEnv's (``openenv.core.env_server.types``) with the arena's
fields added. Unlike OpenEnv's stock server, HTTP episodes are stateful: POST /reset opens a
session and returns its server-issued ``observation.metadata.session_id``; /step and /state
require it (an episode-less HTTP step is a 422, never a step on someone else's episode). Session
cap and TTL: ``sessions.py``. Steps are scored off the event loop: ``batcher.py``. Every status
a route can return is in its OpenAPI ``responses``; errors are ``{"detail": ...}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Body, FastAPI, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from openenv.core.env_server.types import (
    EnvironmentMetadata,
    HealthResponse,
    HealthStatus,
    SchemaResponse,
)
from pydantic import BaseModel, TypeAdapter

from safegrpo.envs.moderation.models import (
    ArenaAction,
    ArenaObservation,
    ArenaState,
    ResetRequest,
    StepRequest,
    StepResponse,
)
from safegrpo.envs.moderation.server.config import ArenaServerConfig
from safegrpo.envs.moderation.server.environment import (
    EnvError,
    ModerationEnvironment,
    PromptIndex,
)
from safegrpo.envs.moderation.server.limits import BodyLimit
from safegrpo.envs.moderation.server.mcp import handle_jsonrpc
from safegrpo.envs.moderation.server.service import ArenaService, client_of
from safegrpo.envs.moderation.server.ws import serve_ws

API_VERSION = "1.0.0"  # the OpenEnv runtime API this server implements (profile openenv-http/1.x)
log = logging.getLogger(__name__)


class ErrorResponse(BaseModel):
    detail: str


class ValidationErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorResponse(BaseModel):
    detail: list[ValidationErrorItem]


class ArenaMetadata(EnvironmentMetadata):
    decisions: list[str]
    tiers: list[str]
    reward_components: list[str]
    sessions: dict[str, Any]
    limits: dict[str, Any]


def _doc(*codes: int) -> dict[int | str, dict[str, Any]]:
    what = {
        400: "unreadable body",
        404: "unknown session_id or prompt_id",
        409: "no open episode (step before reset, or its one step already taken)",
        410: "session expired or evicted",
        413: "body larger than max_body_bytes",
        422: "invalid request (or an unscorable action)",
        429: "busy, retry later: every session slot holds a live episode (/reset), or scoring "
        "did not start within timeout_s (/step; the episode is unchanged)",
        500: "internal error",
    }
    return {
        c: {"model": ValidationErrorResponse if c == 422 else ErrorResponse, "description": what[c]}
        for c in codes
    }


_SID = "$response.body#/observation/metadata/session_id"
_SESSION_LINKS = {  # OpenAPI links: how a /reset reply addresses its session (for clients, fuzzers)
    "StepThisSession": {
        "operationId": "step",
        "requestBody": {"session_id": _SID, "action": {"decision": "reject", "reason": "linked"}},
    },
    "StateOfThisSession": {"operationId": "state", "parameters": {"session_id": _SID}},
}


def _validation_error(loc: list, msg: str, status: int = 422) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": loc, "msg": msg, "type": "value_error"}]}, status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(EnvError)
    async def env_error(_: Request, e: EnvError) -> JSONResponse:
        if e.status == 422:
            return _validation_error(["body"], e.message)
        return JSONResponse({"detail": e.message}, e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        # no "input" echo: a hostile body (deeply nested) must not be serialised back
        errs = [
            {
                "loc": [x if isinstance(x, int) else str(x) for x in err.get("loc", ())],
                "msg": str(err.get("msg", "invalid")),
                "type": str(err.get("type", "value_error")),
            }
            for err in e.errors()
        ]
        return JSONResponse({"detail": errs}, 422)

    @app.exception_handler(Exception)
    async def internal(_: Request, e: Exception) -> JSONResponse:
        log.exception("arena request failed")
        return JSONResponse(
            {"detail": f"internal error ({type(e).__name__}); see the server log"}, 500
        )


def _info_routes(app: FastAPI, arena: ArenaService, meta: EnvironmentMetadata) -> None:
    action_schema = TypeAdapter(ArenaAction).json_schema()

    @app.get("/health", response_model=HealthResponse)
    async def health() -> HealthResponse:
        return HealthResponse(status=HealthStatus.HEALTHY)

    @app.get("/schema", response_model=SchemaResponse)
    async def schema() -> SchemaResponse:
        return SchemaResponse(
            action=action_schema,
            observation=ArenaObservation.model_json_schema(),
            state=ArenaState.model_json_schema(),
        )

    @app.get("/metadata", response_model=ArenaMetadata)
    async def metadata() -> ArenaMetadata:
        return ArenaMetadata(
            **meta.model_dump(exclude_none=True),
            decisions=["allow", "transform", "reject"],
            tiers=["T1", "T2", "T3", "benign"],
            reward_components=[
                "format",
                "decision",
                "transform",
                "overrefusal",
                "keyword",
                "repetition",
                "length",
                "diversity",
            ],
            **arena.metadata_extra(),
        )


def _episode_routes(app: FastAPI, arena: ArenaService) -> None:
    @app.post(
        "/reset",
        response_model=StepResponse,
        operation_id="reset",
        responses={
            200: {"description": "a new episode", "links": _SESSION_LINKS},
            **_doc(400, 404, 413, 422, 429),
        },
    )
    async def reset(
        request: Request, req: ResetRequest = Body(default_factory=ResetRequest)
    ) -> StepResponse:
        env = arena.factory()
        obs = arena.reset(env, req)
        obs.metadata["session_id"] = arena.registry.open(env, "http", client_of(request))
        return StepResponse(observation=obs, reward=None, done=False)

    @app.post(
        "/step",
        response_model=StepResponse,
        operation_id="step",
        responses=_doc(400, 404, 409, 410, 413, 422, 429, 500),
    )
    async def step(req: StepRequest) -> StepResponse:
        env = arena.registry.get(req.session_id)
        obs = await arena.step(env, req.action, req.timeout_s)
        obs.metadata["session_id"] = req.session_id
        if req.request_id is not None:
            obs.metadata["request_id"] = req.request_id
        if req.model_extra:
            obs.metadata["ignored_fields"] = sorted(req.model_extra)
        return StepResponse(observation=obs, reward=obs.reward, done=obs.done)

    @app.get(
        "/state", response_model=ArenaState, operation_id="state", responses=_doc(404, 410, 422)
    )
    async def state(
        session_id: str = Query(max_length=255, description="observation.metadata.session_id"),
    ) -> ArenaState:
        return arena.registry.get(session_id).state


def create_app(
    env_factory: Callable[[], ModerationEnvironment], config: ArenaServerConfig | None = None
) -> FastAPI:
    cfg = config or ArenaServerConfig()
    arena = ArenaService(env_factory, cfg)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        arena.batcher.stop()

    app = FastAPI(
        title="safegrpo moderation arena",
        version=API_VERSION,
        lifespan=lifespan,
        description=__doc__,
    )
    app.state.arena = arena
    app.add_middleware(BodyLimit, max_bytes=cfg.max_body_bytes)
    _install_error_handlers(app)

    _info_routes(app, arena, env_factory().get_metadata())
    _episode_routes(app, arena)

    @app.post(
        "/mcp",
        responses=_doc(413),
        openapi_extra={
            "requestBody": {
                "content": {"application/json": {"schema": {}}},
                "description": "a JSON-RPC 2.0 request",
            }
        },
    )
    async def mcp(request: Request) -> dict[str, Any]:
        """JSON-RPC 2.0 (OpenEnv MCP); errors are JSON-RPC error objects with HTTP 200."""
        return handle_jsonrpc(await request.body())

    @app.websocket("/ws")
    async def ws(socket: WebSocket) -> None:
        await serve_ws(socket, arena)

    return app


def build_default_app(seed: int = 0, config: ArenaServerConfig | None = None) -> FastAPI:
    """App with the embedded default reward (MiniLM + projection judge) and bundled pools."""
    from safegrpo.envs.moderation.pools import load_pool
    from safegrpo.envs.moderation.reward import build_moderation_reward

    cfg = config or ArenaServerConfig(seed=seed)
    reward = build_moderation_reward(seed=cfg.seed)
    pool = PromptIndex(load_pool())
    counter = iter(range(1 << 62))
    return create_app(
        lambda: ModerationEnvironment(reward, pool, seed=cfg.seed + next(counter)), cfg
    )
