"""OpenEnv HTTP + WebSocket server of the moderation arena (OpenEnv runtime API 1.x).

HTTP: GET /health /schema /metadata /state, POST /reset /step /mcp; WS /ws (see ``ws.py``).
Request and reply bodies are OpenEnv's (``openenv.core.env_server.types``) with the arena's
fields added. Unlike OpenEnv's stock server (which builds a fresh environment for every HTTP
request), HTTP episodes are stateful: POST /reset opens a session, returns its server-issued
``observation.metadata.session_id`` and sets it as the ``arena_session`` cookie; /step and /state
take the id, else the cookie, so OpenEnv's plain ``{"action": ...}`` body works from a cookie jar
(with neither: 409, no episode; never a step on someone else's episode). Session cap and TTLs:
``sessions.py``. Steps are scored off the event loop: ``batcher.py``. MCP tools: ``mcp.py``. Every
status a route can return is in its OpenAPI ``responses``; errors are ``{"detail": ...}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Body, Cookie, FastAPI, Query, Request, Response, WebSocket
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
from safegrpo.envs.moderation.server.service import (
    NO_SESSION,
    SESSION_COOKIE,
    ArenaService,
    client_of,
)
from safegrpo.envs.moderation.server.ws import serve_ws

SessionCookie = Annotated[str | None, Cookie(alias=SESSION_COOKIE, max_length=255)]
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
        409: "no open episode (no session_id or cookie, step before reset, or its one step "
        "already taken)",
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
            return _validation_error(list(e.loc), e.message)
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
        request: Request, response: Response, req: ResetRequest = Body(default_factory=ResetRequest)
    ) -> StepResponse:
        res = arena.open_episode(req, client_of(request))
        response.set_cookie(
            SESSION_COOKIE, res.observation.metadata["session_id"], httponly=True, samesite="strict"
        )
        return res

    @app.post(
        "/step",
        response_model=StepResponse,
        operation_id="step",
        responses=_doc(400, 404, 409, 410, 413, 422, 429, 500),
    )
    async def step(req: StepRequest, cookie: SessionCookie = None) -> StepResponse:
        return await arena.step_session(req, req.session_id or cookie)

    @app.get(
        "/state",
        response_model=ArenaState,
        operation_id="state",
        responses=_doc(404, 409, 410, 422),
    )
    async def state(
        session_id: str | None = Query(
            None, max_length=255, description="observation.metadata.session_id (default: cookie)"
        ),
        cookie: SessionCookie = None,
    ) -> ArenaState:
        sid = session_id or cookie
        if sid is None:
            raise EnvError(409, NO_SESSION)
        return arena.registry.get(sid).state


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
        response_model=None,
        responses={
            200: {"description": "a JSON-RPC response"},
            202: {"description": "a notification: no body"},
            **_doc(413),
        },
        openapi_extra={
            "requestBody": {
                "content": {"application/json": {"schema": {}}},
                "description": "a JSON-RPC 2.0 request",
            }
        },
    )
    async def mcp(request: Request) -> Response:
        """JSON-RPC 2.0 (OpenEnv MCP: initialize, ping, tools/list, tools/call with the tools
        reset, step, state); errors are JSON-RPC error objects with HTTP 200, a notification
        gets 202 and no body."""
        answer = await handle_jsonrpc(await request.body(), arena, client=client_of(request))
        return Response(status_code=202) if answer is None else JSONResponse(answer)

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
