"""WS /ws in OpenEnv's wire format: one session per connection.

In: ``{"type": "reset", "data": {reset fields}}``, ``{"type": "step", "data": {action fields}}``
(the action itself, as OpenEnv's ``EnvClient`` sends it), ``{"type": "state"}``,
``{"type": "close"}``, ``{"type": "mcp", "data": {JSON-RPC}}``; a step whose data is OpenEnv
``MCPToolClient``'s ``{"type": "list_tools"}`` or ``{"type": "call_tool", ...}`` runs that MCP
action (``mcp.py``).
Out: ``{"type": "observation"|"state"|"mcp", "data": {...}}`` or
``{"type": "error", "data": {"message", "code" (OpenEnv WSErrorCode), "status" (HTTP-like)}}``.

A bad frame (invalid JSON, a lone UTF-16 surrogate, a binary frame, a non-object, an unknown
type, a message above ``max_body_bytes``) gets an error frame and the session stays open. A
message above ``ws_max_frame_bytes`` cannot be skipped by the WS protocol: uvicorn closes the
connection with 1009. A connection silent for ``ws_idle_timeout_s`` gets an error frame and is
closed (1001), freeing its slot. Frames of one connection are handled in order, so a connection
cannot race its own step.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from openenv.core.env_server.types import WSErrorCode
from pydantic import TypeAdapter, ValidationError
from pydantic_core import from_json

from safegrpo.envs.moderation.models import ArenaAction, ResetRequest, StepResponse
from safegrpo.envs.moderation.server.environment import EnvError, ModerationEnvironment
from safegrpo.envs.moderation.server.mcp import handle_jsonrpc, mcp_client_step
from safegrpo.envs.moderation.server.service import ArenaService, client_of

ACTION = TypeAdapter(ArenaAction)
log = logging.getLogger(__name__)
TYPES = ("reset", "step", "state", "close", "mcp")
NO_REPLY = ""  # an MCP notification gets no answer


class _FrameError(Exception):
    def __init__(self, code: WSErrorCode, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.data = {"message": message, "code": code.value, "status": status, **extra}


async def serve_ws(socket: WebSocket, arena: ArenaService) -> None:
    await socket.accept()
    env = arena.factory()
    try:
        sid = arena.registry.open(env, "ws", client_of(socket))
    except EnvError as e:
        await socket.send_text(
            _error(_FrameError(WSErrorCode.CAPACITY_REACHED, e.status, e.message))
        )
        await socket.close(code=1013)  # try again later
        return
    try:
        while True:
            frame = await _receive(socket, arena.cfg.ws_idle_timeout_s)
            if frame is None:  # idle: free the slot
                await socket.close(code=1001, reason="idle (ws_idle_timeout_s)")
                return
            if frame["type"] == "websocket.disconnect":
                return
            try:
                reply = await _handle(frame, env, arena)
            except _FrameError as e:
                reply = _error(e)
            if reply is None:  # close
                break
            if reply is not NO_REPLY:
                await socket.send_text(reply)
        await socket.close()
    except (WebSocketDisconnect, OSError, RuntimeError):  # the client left mid-reply
        return
    finally:
        arena.registry.close(sid)


async def _receive(socket: WebSocket, idle_s: float) -> dict | None:
    """The next frame, or None (after telling the client) when none came within ``idle_s``."""
    try:
        return await asyncio.wait_for(socket.receive(), idle_s)
    except TimeoutError:
        msg = f"no message for {idle_s:g} s (ws_idle_timeout_s): the session is closed"
        await socket.send_text(_error(_FrameError(WSErrorCode.SESSION_ERROR, 408, msg)))
        return None


async def _handle(frame: dict, env: ModerationEnvironment, arena: ArenaService) -> str | None:
    msg = _decode(frame, arena.cfg.max_body_bytes)
    kind, data = msg["type"], msg.get("data", {})
    try:
        if kind == "reset":
            obs = arena.reset(env, ResetRequest.model_validate(_object(data, "reset")))
            return _reply("observation", StepResponse(observation=obs, reward=None, done=False))
        if kind == "step":
            data = _object(data, "step")
            if data.get("type") in ("list_tools", "call_tool"):  # OpenEnv's MCPToolClient
                return json.dumps({"type": "observation",
                                   "data": await mcp_client_step(data, arena, env)})
            obs = await arena.step(env, ACTION.validate_python(data))
            return _reply(
                "observation", StepResponse(observation=obs, reward=obs.reward, done=True)
            )
        if kind == "state":
            return json.dumps({"type": "state", "data": env.state.model_dump()})
        if kind == "mcp":
            answer = await handle_jsonrpc(data, arena, decoded=True, env=env)
            return NO_REPLY if answer is None else json.dumps({"type": "mcp", "data": answer})
        return None  # close
    except ValidationError as e:
        errs = [{"loc": list(x["loc"]), "msg": x["msg"], "type": x["type"]} for x in e.errors()]
        first = errs[0]
        raise _FrameError(
            WSErrorCode.VALIDATION_ERROR,
            422,
            f"invalid {kind} data: {'.'.join(map(str, first['loc'])) or 'data'}: {first['msg']}",
            errors=errs,
        ) from None
    except EnvError as e:
        raise _FrameError(WSErrorCode.EXECUTION_ERROR, e.status, e.message) from None
    except _FrameError:
        raise
    except Exception as e:  # noqa: BLE001 - a server fault ends this request, not the session
        log.exception("arena ws %s failed", kind)
        raise _FrameError(
            WSErrorCode.EXECUTION_ERROR,
            500,
            f"internal error ({type(e).__name__}); see the server log",
        ) from None


def _decode(frame: dict, limit: int) -> dict:
    text = frame.get("text")
    if text is None:
        raise _FrameError(
            WSErrorCode.INVALID_JSON,
            400,
            "binary frames are not supported: send JSON as a text frame",
        )
    if len(text) > limit:
        raise _FrameError(
            WSErrorCode.VALIDATION_ERROR, 413, f"message of {len(text)} characters; at most {limit}"
        )
    try:  # pydantic's parser, as HTTP bodies: lone surrogates and > 200 levels are refused
        msg = from_json(text)
    except ValueError as e:
        raise _FrameError(WSErrorCode.INVALID_JSON, 400, f"invalid JSON: {e}") from None
    if not isinstance(msg, dict):
        raise _FrameError(
            WSErrorCode.VALIDATION_ERROR,
            422,
            f"a message is a JSON object {{type, data}}, got {type(msg).__name__}",
        )
    extra = sorted(set(msg) - {"type", "data"})
    if extra:
        raise _FrameError(
            WSErrorCode.VALIDATION_ERROR,
            422,
            f"unknown message field(s) {extra}; a message has 'type' and 'data'",
        )
    if msg.get("type") not in TYPES:
        raise _FrameError(
            WSErrorCode.UNKNOWN_TYPE,
            400,
            f"unknown message type {str(msg.get('type'))[:50]!r}; valid: {', '.join(TYPES)}",
        )
    return msg


def _object(data: Any, kind: str) -> dict:
    if not isinstance(data, dict):
        raise _FrameError(
            WSErrorCode.VALIDATION_ERROR,
            422,
            f"{kind} data must be a JSON object, got {type(data).__name__}",
        )
    return data


def _reply(kind: str, payload: StepResponse) -> str:
    return f'{{"type": "{kind}", "data": {payload.model_dump_json()}}}'


def _error(e: _FrameError) -> str:
    return json.dumps({"type": "error", "data": e.data})
