"""OpenEnv's MCP endpoint (JSON-RPC 2.0 over POST /mcp and WS ``{"type": "mcp"}``).

The arena exposes no MCP tools (episodes go through reset/step), so ``tools/list`` is empty and
``tools/call`` names the missing tool. Every answer is a JSON-RPC object with HTTP 200, errors
included, as the JSON-RPC spec and ``openenv validate`` expect.
"""

from __future__ import annotations

from typing import Any

from openenv.core.env_server.mcp_types import (
    JsonRpcErrorCode,
    JsonRpcRequest,
    JsonRpcResponse,
    McpMethod,
)
from pydantic import ValidationError
from pydantic_core import from_json


def handle_jsonrpc(body: bytes | str | Any, *, decoded: bool = False) -> dict[str, Any]:
    """Answer one JSON-RPC request (raw bytes/str, or an already decoded object)."""
    try:  # pydantic's parser, as for HTTP bodies: a lone surrogate (e.g. as the id) cannot be
        # echoed back as UTF-8, so it is a parse error here rather than a 500 on the reply
        data = body if decoded else from_json(body)
    except ValueError as e:
        return JsonRpcResponse.error_response(
            JsonRpcErrorCode.PARSE_ERROR, f"Parse error: {e}"
        ).model_dump()
    try:
        req = JsonRpcRequest.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "request"
        return JsonRpcResponse.error_response(
            JsonRpcErrorCode.INVALID_REQUEST,
            f"Invalid request: {where}: {first['msg']}",
            request_id=data.get("id")
            if isinstance(data, dict) and _is_id(data.get("id"))
            else None,
        ).model_dump()
    if req.method == McpMethod.TOOLS_LIST:
        return JsonRpcResponse.success({"tools": []}, request_id=req.id).model_dump()
    if req.method == McpMethod.TOOLS_CALL:
        return JsonRpcResponse.error_response(
            JsonRpcErrorCode.INVALID_PARAMS,
            f"Tool not found: {req.params.get('name')!r} (the arena exposes no MCP tools; "
            "use reset/step)",
            request_id=req.id,
        ).model_dump()
    return JsonRpcResponse.error_response(
        JsonRpcErrorCode.METHOD_NOT_FOUND,
        f"Method not found: {req.method!r}; valid: "
        f"{McpMethod.TOOLS_LIST.value}, {McpMethod.TOOLS_CALL.value}",
        request_id=req.id,
    ).model_dump()


def _is_id(v: Any) -> bool:
    return isinstance(v, str | int) and not isinstance(v, bool)
