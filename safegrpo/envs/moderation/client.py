"""Clients of the moderation arena server. They fail loudly: any non-2xx answer or WS error
message raises ``ArenaError`` carrying the server's message."""

from __future__ import annotations

import json
from typing import Any

import httpx

from safegrpo.envs.moderation.models import ArenaState, StepResponse


class ArenaError(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(f"arena server answered {status}: {message}")
        self.status, self.message = status, message


class ArenaClient:
    """HTTP client. ``http`` may be any httpx.Client (e.g. FastAPI's TestClient in tests)."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", http: httpx.Client | None = None,
                 timeout: float = 30.0):
        self.http = http or httpx.Client(base_url=base_url, timeout=timeout)
        self.episode_id: str | None = None

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        r = self.http.request(method, path, **kw)
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise ArenaError(r.status_code, detail if isinstance(detail, str) else json.dumps(detail))
        return r.json()

    def health(self) -> dict:
        return self._call("GET", "/health")

    def schema(self) -> dict:
        return self._call("GET", "/schema")

    def reset(self, **kw: Any) -> StepResponse:
        res = StepResponse.model_validate(self._call("POST", "/reset", json=kw))
        self.episode_id = res.observation.metadata["episode_id"]
        return res

    def step(self, action: dict | str) -> StepResponse:
        return StepResponse.model_validate(
            self._call("POST", "/step", json={"action": action, "episode_id": self.episode_id}))

    def state(self) -> ArenaState:
        return ArenaState.model_validate(self._call("GET", "/state", params={"episode_id": self.episode_id}))


class ArenaWSClient:
    """WebSocket session client (one episode spans reset -> step on one connection)."""

    def __init__(self, url: str = "ws://127.0.0.1:8000/ws", timeout: float = 30.0):
        from websockets.sync.client import connect

        self.conn = connect(url, open_timeout=timeout)
        self.timeout = timeout

    def _send(self, kind: str, data: dict | None = None) -> dict:
        self.conn.send(json.dumps({"type": kind, "data": data or {}}))
        msg = json.loads(self.conn.recv(timeout=self.timeout))
        if msg.get("type") == "error":
            raise ArenaError(msg["data"].get("code", 400), msg["data"].get("message", "error"))
        return msg["data"]

    def reset(self, **kw: Any) -> StepResponse:
        return StepResponse.model_validate(self._send("reset", kw))

    def step(self, action: dict | str) -> StepResponse:
        return StepResponse.model_validate(self._send("step", {"action": action}))

    def state(self) -> ArenaState:
        return ArenaState.model_validate(self._send("state"))

    def close(self) -> None:
        try:
            self._send("close")
        finally:
            self.conn.close()

    def __enter__(self) -> ArenaWSClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
