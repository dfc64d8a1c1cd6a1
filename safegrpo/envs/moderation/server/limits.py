"""ASGI middleware bounding HTTP request bodies: over ``max_bytes`` -> 413 before any parsing
(checked on Content-Length and again on the bytes actually received)."""

from __future__ import annotations

import json
from typing import Any


class BodyLimit:
    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _answer(send, 400, "invalid Content-Length header")
                return
            if int(declared) > self.max_bytes:
                await _answer(send, 413, self._too_big(int(declared)))
                return
        body, more = bytearray(), True
        while more:
            msg = await receive()
            if msg["type"] != "http.request":  # client went away
                return
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
            if len(body) > self.max_bytes:
                await _answer(send, 413, self._too_big(len(body)))
                return
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_big(self, n: int) -> str:
        return f"request body of {n} bytes; at most {self.max_bytes} (max_body_bytes)"


async def _answer(send: Any, status: int, detail: str) -> None:
    payload = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
