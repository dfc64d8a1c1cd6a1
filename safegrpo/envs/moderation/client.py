"""Clients of the moderation arena server. Both fail loudly: any non-2xx answer or WS error frame
raises ``ArenaError`` carrying the server's status and message.

- ``ArenaEnv``: OpenEnv ``EnvClient`` subclass (WebSocket, one session per connection; async,
  ``.sync()`` for blocking use). OpenEnv's ``GenericEnvClient`` also works as is.
- ``ArenaClient``: HTTP, one episode at a time, addressed by the server-issued session id.

An action is a ``DecisionAction``/``DefenderAction``/dict of its fields, a ``CompletionAction``,
or a ``str`` (the policy's raw completion, sent as ``{"completion": ...}``).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from openenv.core.client_types import StepResult
from openenv.core.env_client import EnvClient
from pydantic import BaseModel

from safegrpo.envs.moderation.models import ArenaObservation, ArenaState, StepResponse

Action = BaseModel | dict[str, Any] | str


class ArenaError(RuntimeError):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(f"arena server answered {status}: {message}")
        self.status, self.message, self.code = status, message, code


def action_payload(action: Action) -> dict[str, Any]:
    """The wire form of an action (OpenEnv sends the action's fields as they are)."""
    if isinstance(action, str):
        return {"completion": action}
    if isinstance(action, BaseModel):
        return action.model_dump(exclude_none=True)
    if isinstance(action, dict):
        return action
    raise TypeError(
        f"an arena action is a str, a dict or a pydantic model, not {type(action).__name__}"
    )


class ArenaEnv(EnvClient[Action, ArenaObservation, ArenaState]):
    """Typed OpenEnv client: ``async with ArenaEnv(url) as env``, or ``with ArenaEnv(url).sync()``
    for blocking use."""

    def _step_payload(self, action: Action) -> dict[str, Any]:
        return action_payload(action)

    def _parse_result(self, payload: dict[str, Any]) -> StepResult[ArenaObservation]:
        res = StepResponse.model_validate(payload)
        return StepResult(observation=res.observation, reward=res.reward, done=res.done)

    def _parse_state(self, payload: dict[str, Any]) -> ArenaState:
        return ArenaState.model_validate(payload)

    async def _send_and_receive(self, message: dict[str, Any]) -> dict[str, Any]:
        await self._send(message)
        response = await self._receive()
        if response.get("type") == "error":
            data = response.get("data") or {}
            raise ArenaError(
                int(data.get("status", 400)), str(data.get("message", "error")), data.get("code")
            )
        return response


class ArenaClient:
    """HTTP client. ``http`` may be any httpx.Client (e.g. FastAPI's TestClient in tests)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        http: httpx.Client | None = None,
        timeout: float = 30.0,
    ):
        self.http = http or httpx.Client(base_url=base_url, timeout=timeout)
        self.session_id: str | None = None

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        r = self.http.request(method, path, **kw)
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            if isinstance(detail, list):  # validation errors: "loc: msg; ..."
                detail = "; ".join(
                    f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}"
                    if isinstance(d, dict)
                    else json.dumps(d)
                    for d in detail
                )
            raise ArenaError(
                r.status_code, detail if isinstance(detail, str) else json.dumps(detail)
            )
        return r.json()

    def health(self) -> dict:
        return self._call("GET", "/health")

    def schema(self) -> dict:
        return self._call("GET", "/schema")

    def metadata(self) -> dict:
        return self._call("GET", "/metadata")

    def reset(self, **kw: Any) -> StepResponse:
        """Start an episode (a new server session); ``kw``: seed, prompt_id, split, episode_id."""
        res = StepResponse.model_validate(self._call("POST", "/reset", json=kw))
        self.session_id = res.observation.metadata["session_id"]
        return res

    def step(self, action: Action, **kw: Any) -> StepResponse:
        """Score ``action`` on the current episode; ``kw``: timeout_s, request_id."""
        if self.session_id is None:
            raise ArenaError(409, "call reset before step")
        body = {"action": action_payload(action), "session_id": self.session_id, **kw}
        return StepResponse.model_validate(self._call("POST", "/step", json=body))

    def state(self) -> ArenaState:
        if self.session_id is None:
            raise ArenaError(409, "call reset before state")
        return ArenaState.model_validate(
            self._call("GET", "/state", params={"session_id": self.session_id})
        )
