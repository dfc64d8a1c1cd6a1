"""What the scorer server does before and around parsing a /score body.

``RequestGuard`` (ASGI middleware) checks the API key, the content type and the declared
``Content-Length`` *before any body byte is read*, then reads at most ``max_body_bytes``. Every
refusal it makes carries ``Connection: close`` and the server closes the connection after it, so
the rest of an unauthenticated or oversized upload is never read (without it, uvicorn keeps the
connection and drains the body to reuse it: issue 23 measured 2 GiB drained after a 401). A
client that sends ``Expect: 100-continue`` or reads while it writes sees the status; one that
only writes sees the connection reset. Keys are compared with ``hmac.compare_digest``.

``small_validation_error`` answers a 422 without echoing the request: at most ``MAX_ERRORS``
errors, each ``input`` cut to ``MAX_INPUT_CHARS`` of JSON, the body ASCII-escaped (a lone UTF-16
surrogate in a key or text cannot make it fail), and a length/size error names the server limit.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import Response

MAX_ERRORS, MAX_INPUT_CHARS = 10, 120
LIMIT_OF_ERROR = {"too_long": "max_items", "string_too_long": "max_chars"}


def key_ok(headers: dict[str, str], key: str) -> bool:
    """At least one of ``X-API-Key`` / ``Authorization: Bearer`` is sent and every one sent
    holds the key (a wrong credential is never excused by a right one); constant-time compares."""
    want, sent = key.encode(), []
    if "x-api-key" in headers:
        sent.append(headers["x-api-key"])
    if "authorization" in headers:
        auth = headers["authorization"]
        sent.append(auth[7:] if auth[:7].lower() == "bearer " else "")
    return bool(sent) and all([hmac.compare_digest(s.encode(), want) for s in sent])


async def refuse(send: Any, status: int, detail: str, extra: dict[str, str] | None = None) -> None:
    """Answer and close: the unread rest of the request body is never read."""
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware in front of ``POST /score`` (see the module docstring); the app gets the
    body it read replayed."""

    def __init__(self, app: Any, max_body_bytes: int, api_key: str | None):
        self.app, self.cap, self.api_key = app, max_body_bytes, api_key

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/score" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.api_key is not None and not key_ok(headers, self.api_key):
            return await refuse(send, 401, "missing or wrong API key",
                                {"www-authenticate": "Bearer"})
        too_big = f"request body over {self.cap} bytes; split the items over several requests"
        ctype = headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if ctype != "application/json" and not ctype.endswith("+json"):
            return await refuse(send, 415, f"content type {ctype!r}; send application/json")
        length = headers.get("content-length", "0")
        if not length.isdigit():  # servers (h11, httptools) already refuse this
            return await refuse(send, 400, "Content-Length is not a number")
        if int(length) > self.cap:
            return await refuse(send, 413, too_big)
        body, more = bytearray(), True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return None
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
            if len(body) > self.cap:
                return await refuse(send, 413, too_big)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        return await self.app(scope, replay, send)


def _shrink(err: dict) -> dict:
    out = {"type": err["type"], "loc": list(err["loc"]), "msg": str(err["msg"])[:300]}
    if err["type"] in LIMIT_OF_ERROR:
        out["msg"] += f" (server limit {LIMIT_OF_ERROR[err['type']]})"
    preview = json.dumps(jsonable_encoder(err.get("input")))
    out["input"] = (err.get("input") if len(preview) <= MAX_INPUT_CHARS
                    else preview[:MAX_INPUT_CHARS] + "...")
    return out


async def small_validation_error(_: Request, exc: Exception) -> Response:
    """422 with at most ``MAX_ERRORS`` errors and short inputs (see the module docstring)."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    detail = [_shrink(e) for e in errors[:MAX_ERRORS]]
    if len(errors) > MAX_ERRORS:
        detail.append({"type": "more_errors", "loc": ["body"],
                       "msg": f"{len(errors) - MAX_ERRORS} more errors not shown"})
    body = json.dumps({"detail": jsonable_encoder(detail)}, ensure_ascii=True)
    return Response(body, status_code=422, media_type="application/json")
