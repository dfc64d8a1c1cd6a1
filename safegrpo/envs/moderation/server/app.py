"""OpenEnv-shaped HTTP + WebSocket server for the moderation arena.

HTTP: GET /health, /schema, /metadata, /state; POST /reset, /step. Each reset creates an
isolated session whose id is ``observation.metadata.episode_id``; /step and /state take it as
``episode_id`` (HTTP /step without one uses the newest session). WS /ws: one session per
connection, messages {"type": "reset"|"step"|"state"|"close", "data": {...}} answered by
{"type": "observation"|"state"|"error", "data": {...}}. Client errors are 4xx with a message.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Query, WebSocket, WebSocketDisconnect
from pydantic import ConfigDict, ValidationError

from safegrpo.envs.moderation.models import (
    ArenaObservation,
    ArenaState,
    DefenderAction,
    ResetRequest,
    StepRequest,
    StepResponse,
)
from safegrpo.envs.moderation.server.environment import EnvError, ModerationEnvironment

MAX_ACTION_CHARS = 20_000


class HTTPStepRequest(StepRequest):
    model_config = ConfigDict(extra="forbid")
    episode_id: str | None = None


def _check_size(action: Any) -> None:
    if len(str(action)) > MAX_ACTION_CHARS:
        raise EnvError(413, f"action larger than {MAX_ACTION_CHARS} characters")


def create_app(env_factory: Callable[[], ModerationEnvironment], *, max_sessions: int = 256) -> FastAPI:
    app = FastAPI(title="safegrpo moderation arena", version="0.1.0")
    sessions: OrderedDict[str, ModerationEnvironment] = OrderedDict()
    lock = threading.Lock()

    def new_session(req: ResetRequest) -> tuple[ModerationEnvironment, ArenaObservation]:
        env = env_factory()
        obs = env.reset(**req.model_dump())
        with lock:
            sessions[env.state.episode_id] = env
            while len(sessions) > max_sessions:
                sessions.popitem(last=False)
        return env, obs

    def get_session(episode_id: str | None) -> ModerationEnvironment:
        with lock:
            if not sessions:
                raise EnvError(409, "no session: call /reset first")
            if episode_id is None:
                return next(reversed(sessions.values()))
            if episode_id not in sessions:
                raise EnvError(404, f"unknown or expired episode_id {episode_id!r}")
            return sessions[episode_id]

    def guard(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except EnvError as e:
            raise HTTPException(status_code=e.status, detail=e.message) from None

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "healthy"}

    @app.get("/schema")
    def schema() -> dict[str, Any]:
        return {"action": DefenderAction.model_json_schema(), "observation": ArenaObservation.model_json_schema(),
                "state": ArenaState.model_json_schema()}

    @app.get("/metadata")
    def metadata() -> dict[str, Any]:
        return {"name": "moderation_arena", "version": "0.1.0",
                "description": "Defender decides allow/transform/reject for image-generation prompts.",
                "decisions": ["allow", "transform", "reject"], "tiers": ["T1", "T2", "T3", "benign"],
                "reward_components": ["format", "decision", "transform", "overrefusal", "keyword",
                                      "repetition", "length", "diversity"]}

    @app.post("/reset", response_model=StepResponse)
    def reset(req: ResetRequest | None = None) -> StepResponse:
        _, obs = guard(lambda: new_session(req or ResetRequest()))
        return StepResponse(observation=obs, reward=None, done=False)

    @app.post("/step", response_model=StepResponse)
    def step(req: HTTPStepRequest) -> StepResponse:
        def run() -> ArenaObservation:
            _check_size(req.action)
            return get_session(req.episode_id).step(req.action)
        obs = guard(run)
        return StepResponse(observation=obs, reward=obs.reward, done=obs.done)

    @app.get("/state", response_model=ArenaState)
    def state(episode_id: str | None = Query(default=None)) -> ArenaState:
        return guard(lambda: get_session(episode_id).state)

    @app.websocket("/ws")
    async def ws(socket: WebSocket) -> None:
        await socket.accept()
        env: ModerationEnvironment | None = None
        try:
            while True:
                msg = await socket.receive_json()
                reply, env = _handle_ws(msg, env, env_factory)
                await socket.send_json(reply)
                if msg.get("type") == "close":
                    break
        except WebSocketDisconnect:
            return
        await socket.close()

    return app


def _handle_ws(msg: Any, env: ModerationEnvironment | None, factory) -> tuple[dict, ModerationEnvironment | None]:
    def err(message: str, code: int) -> tuple[dict, ModerationEnvironment | None]:
        return {"type": "error", "data": {"message": message, "code": code}}, env

    if not isinstance(msg, dict) or "type" not in msg:
        return err("message must be an object with a 'type'", 400)
    kind, data = msg["type"], msg.get("data") or {}
    try:
        if kind == "reset":
            env = env or factory()
            obs = env.reset(**ResetRequest.model_validate(data).model_dump())
            return {"type": "observation", "data": StepResponse(observation=obs, reward=None, done=False).model_dump()}, env
        if kind == "step":
            if env is None:
                return err("call reset before step", 409)
            req = StepRequest.model_validate(data)
            _check_size(req.action)
            obs = env.step(req.action)
            return {"type": "observation", "data": StepResponse(observation=obs, reward=obs.reward, done=True).model_dump()}, env
        if kind == "state":
            return {"type": "state", "data": (env.state if env else ArenaState()).model_dump()}, env
        if kind == "close":
            return {"type": "closed", "data": {}}, env
        return err(f"unknown message type {kind!r}; valid: reset, step, state, close", 400)
    except ValidationError as e:
        return err(f"invalid {kind} data: {e.errors()[0]['loc']}: {e.errors()[0]['msg']}", 422)
    except EnvError as e:
        return err(e.message, e.status)




def build_default_app(seed: int = 0) -> FastAPI:
    """App with the embedded default reward (MiniLM + projection judge) and bundled pools."""
    from safegrpo.envs.moderation.pools import load_pool
    from safegrpo.rewards.moderation import build_moderation_reward

    reward = build_moderation_reward(seed=seed)
    records = load_pool()
    counter = iter(range(1 << 62))
    return create_app(lambda: ModerationEnvironment(reward, records, seed=seed + next(counter)))
