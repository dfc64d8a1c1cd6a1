"""OpenEnv's MCP endpoint (JSON-RPC 2.0 over POST /mcp and WS ``{"type": "mcp"}``), and the MCP
step shapes of OpenEnv's ``MCPToolClient`` over WS (``{"type": "list_tools" | "call_tool"}``).

Methods: ``initialize``, ``ping``, ``tools/list``, ``tools/call`` (notifications get no reply).
The tools are the episode itself: ``reset``, ``step`` and ``state`` take the bodies of POST
/reset, POST /step and GET /state's query. Over HTTP each ``reset`` opens a session like POST
/reset and ``step``/``state`` name it by ``session_id``; over WS the connection is the session. A
tool that fails (409 second step, 404, 422 ...) answers a result with ``isError`` and the status;
protocol errors are JSON-RPC error objects. Every answer has HTTP 200, as the JSON-RPC spec and
``openenv validate`` expect.
"""

from __future__ import annotations

import logging
from typing import Any

from openenv.core.env_server.mcp_types import JsonRpcErrorCode, JsonRpcRequest, JsonRpcResponse
from pydantic import ValidationError
from pydantic_core import from_json, to_json

from safegrpo.envs.moderation.models import ResetRequest, StepRequest, StepResponse
from safegrpo.envs.moderation.server.environment import EnvError, ModerationEnvironment
from safegrpo.envs.moderation.server.service import NO_SESSION, ArenaService

log = logging.getLogger(__name__)
PROTOCOL_VERSION = "2025-06-18"
METHODS = ("initialize", "ping", "tools/list", "tools/call")
_SID = {"type": "string", "maxLength": 255, "description": "observation.metadata.session_id "
        "of the reset tool (HTTP /mcp only; over WS the connection is the session)"}
TOOLS = [
    {"name": "reset", "description": "Start an episode; over HTTP it opens a session whose id "
     "is observation.metadata.session_id. Arguments: the body of POST /reset.",
     "inputSchema": ResetRequest.model_json_schema()},
    {"name": "step", "description": "Take the episode's one step and get its reward. "
     "Arguments: the body of POST /step ({action, session_id}).",
     "inputSchema": StepRequest.model_json_schema()},
    {"name": "state", "description": "The episode's state (prompt_id only after the step).",
     "inputSchema": {"type": "object", "properties": {"session_id": _SID}}},
]


async def handle_jsonrpc(
    body: bytes | Any,
    arena: ArenaService,
    *,
    decoded: bool = False,
    env: ModerationEnvironment | None = None,
    client: str = "",
) -> dict[str, Any] | None:
    """Answer one JSON-RPC request (raw bytes, or an already decoded object); None for a
    notification. ``env``: the WS connection's environment (None over HTTP)."""
    try:  # pydantic's parser, as for HTTP bodies: a lone surrogate (e.g. as the id) cannot be
        # echoed back as UTF-8, so it is a parse error here rather than a 500 on the reply
        data = body if decoded else from_json(body)
    except ValueError as e:
        return _error(JsonRpcErrorCode.PARSE_ERROR, f"Parse error: {e}")
    try:
        req = JsonRpcRequest.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "request"
        rid = data.get("id") if isinstance(data, dict) and _is_id(data.get("id")) else None
        return _error(JsonRpcErrorCode.INVALID_REQUEST, f"Invalid request: {where}: "
                      f"{first['msg']}", rid)
    if req.id is None and req.method.startswith("notifications/"):
        return None
    if req.method == "initialize":
        return _ok(_initialize(req.params), req.id)
    if req.method == "ping":
        return _ok({}, req.id)
    if req.method == "tools/list":
        return _ok({"tools": TOOLS}, req.id)
    if req.method == "tools/call":
        name, args = req.params.get("name"), req.params.get("arguments") or {}
        if not isinstance(name, str) or not isinstance(args, dict):
            return _error(JsonRpcErrorCode.INVALID_PARAMS,
                          "tools/call params are {name: str, arguments: object}", req.id)
        if name not in TOOL_NAMES:
            return _error(JsonRpcErrorCode.INVALID_PARAMS, f"Tool not found: {name[:50]!r}; "
                          f"tools: {', '.join(TOOL_NAMES)}", req.id)
        try:
            return _ok(await call_tool(name, args, arena, env, client), req.id)
        except Exception as e:  # noqa: BLE001 - a server fault is a JSON-RPC error, not a 500
            log.exception("arena mcp tool %s failed", name)
            return _error(JsonRpcErrorCode.INTERNAL_ERROR,
                          f"internal error ({type(e).__name__}); see the server log", req.id)
    return _error(JsonRpcErrorCode.METHOD_NOT_FOUND, f"Method not found: {req.method[:50]!r}; "
                  f"valid: {', '.join(METHODS)}", req.id)


TOOL_NAMES = tuple(t["name"] for t in TOOLS)


async def call_tool(
    name: str, args: dict, arena: ArenaService, env: ModerationEnvironment | None, client: str
) -> dict[str, Any]:
    """An MCP ``CallToolResult``: the tool's reply as ``structuredContent`` (and as JSON text),
    or ``isError`` with ``{status, detail}`` when the tool refused."""
    try:
        out, failed = await _run(name, args, arena, env, client), False
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(map(str, first["loc"])) or name
        out, failed = {"status": 422, "detail": f"{where}: {first['msg']}"}, True
    except EnvError as e:
        out, failed = {"status": e.status, "detail": e.message}, True
    text = to_json(out).decode()
    return {"content": [{"type": "text", "text": text}], "structuredContent": out,
            "isError": failed}


async def _run(
    name: str, args: dict, arena: ArenaService, env: ModerationEnvironment | None, client: str
) -> dict[str, Any]:
    if name == "reset":
        req = ResetRequest.model_validate(args)
        if env is None:
            return arena.open_episode(req, client).model_dump(mode="json")
        obs = arena.reset(env, req)
        return StepResponse(observation=obs, reward=None, done=False).model_dump(mode="json")
    if name == "step":
        req = StepRequest.model_validate(args)
        if env is None:
            return (await arena.step_session(req, req.session_id)).model_dump(mode="json")
        obs = await arena.step(env, req.action, req.timeout_s)
        return StepResponse(observation=obs, reward=obs.reward, done=obs.done).model_dump(
            mode="json"
        )
    sid = args.get("session_id")
    if env is None and not isinstance(sid, str):
        raise EnvError(409, NO_SESSION)
    return (env or arena.registry.get(sid)).state.model_dump(mode="json")


async def mcp_client_step(
    data: dict, arena: ArenaService, env: ModerationEnvironment
) -> dict[str, Any]:
    """A WS step that is OpenEnv ``MCPToolClient``'s ``list_tools``/``call_tool`` action, answered
    as the observation that client parses (``tools``, or ``tool_name`` + ``result``)."""
    if data.get("type") == "list_tools":
        return {"observation": {"tools": TOOLS}, "reward": None, "done": False}
    name, args = data.get("tool_name"), data.get("arguments") or {}
    if name not in TOOL_NAMES or not isinstance(args, dict):
        err = {"error_type": "tool_not_found" if name not in TOOL_NAMES else "invalid_args",
               "message": f"tools: {', '.join(TOOL_NAMES)}; arguments is an object"}
        return {"observation": {"tool_name": str(name)[:50], "result": None, "error": err},
                "reward": None, "done": False}
    result = (await call_tool(name, args, arena, env, ""))["structuredContent"]
    reward, done = (result.get("reward"), result.get("done", False)) if name == "step" else (
        None, False)
    return {"observation": {"tool_name": name, "result": result, "error": None},
            "reward": reward, "done": done}


def _initialize(params: dict) -> dict[str, Any]:
    asked = params.get("protocolVersion")
    return {
        "protocolVersion": asked if isinstance(asked, str) and asked else PROTOCOL_VERSION,
        "capabilities": {"tools": {"listChanged": False}},
        "serverInfo": {"name": "safegrpo-moderation-arena", "version": "1.0.0"},
        "instructions": "One episode = reset, then one step (decision or raw completion).",
    }


def _ok(result: Any, rid: Any) -> dict[str, Any]:
    return JsonRpcResponse.success(result, request_id=rid).model_dump()


def _error(code: JsonRpcErrorCode, message: str, rid: Any = None) -> dict[str, Any]:
    return JsonRpcResponse.error_response(code, message, request_id=rid).model_dump()


def _is_id(v: Any) -> bool:
    return isinstance(v, str | int) and not isinstance(v, bool)
