"""What HTTP, WS and MCP share: the session registry, the batcher and the reset/step paths."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from safegrpo.envs.moderation.models import (
    ArenaObservation,
    CompletionAction,
    DecisionAction,
    ResetRequest,
    StepRequest,
    StepResponse,
)
from safegrpo.envs.moderation.server.batcher import StepBatcher
from safegrpo.envs.moderation.server.config import ArenaServerConfig
from safegrpo.envs.moderation.server.environment import EnvError, ModerationEnvironment
from safegrpo.envs.moderation.server.sessions import SessionRegistry

RESET_FIELDS = ("seed", "episode_id", "prompt_id", "split")
SESSION_COOKIE = "arena_session"
NO_SESSION = (
    "no episode: call POST /reset first, then send its session_id "
    f"(observation.metadata.session_id) or the {SESSION_COOKIE} cookie it sets"
)


class ArenaService:
    def __init__(self, env_factory: Callable[[], ModerationEnvironment], cfg: ArenaServerConfig):
        self.factory, self.cfg = env_factory, cfg
        self.registry = SessionRegistry(
            cfg.max_sessions,
            cfg.session_ttl_s,
            reservation_ttl_s=cfg.reservation_ttl_s,
            per_client=cfg.max_sessions_per_client,
        )
        self.batcher = StepBatcher(cfg.max_batch, cfg.max_wait_ms)

    @staticmethod
    def reset(env: ModerationEnvironment, req: ResetRequest) -> ArenaObservation:
        """Reset with the known fields; unknown ones are ignored (OpenEnv) and listed."""
        obs = env.reset(**{k: getattr(req, k) for k in RESET_FIELDS})
        ignored = sorted(req.model_extra or {})
        if ignored:
            obs.metadata["ignored_fields"] = ignored
        return obs

    def open_episode(self, req: ResetRequest, client: str) -> StepResponse:
        """HTTP reset: a new session with a fresh episode (its id in observation.metadata)."""
        env = self.factory()
        obs = self.reset(env, req)
        obs.metadata["session_id"] = self.registry.open(env, "http", client)
        return StepResponse(observation=obs, reward=None, done=False)

    async def step_session(self, req: StepRequest, sid: str | None) -> StepResponse:
        """HTTP step of session ``sid`` (the body's ``session_id``, else the caller's cookie)."""
        if sid is None:
            raise EnvError(409, NO_SESSION)
        obs = await self.step(self.registry.get(sid), req.action, req.timeout_s)
        obs.metadata["session_id"] = sid
        if req.request_id is not None:
            obs.metadata["request_id"] = req.request_id
        if req.model_extra:
            obs.metadata["ignored_fields"] = sorted(req.model_extra)
        return StepResponse(observation=obs, reward=obs.reward, done=obs.done)

    async def step(
        self,
        env: ModerationEnvironment,
        action: DecisionAction | CompletionAction,
        timeout_s: float | None = None,
    ) -> ArenaObservation:
        """Claim the episode's one step, score it off the loop, complete it. On any failure the
        claim is released and the episode stays open."""
        job = env.claim(action)
        try:
            row = await self.batcher.score(env.reward, job, timeout_s)
        except BaseException:
            env.release()
            raise
        return env.complete(job, row)

    def metadata_extra(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "sessions": {
                "max_sessions": cfg.max_sessions,
                "max_sessions_per_client": cfg.max_sessions_per_client,
                "session_ttl_s": cfg.session_ttl_s,
                "reservation_ttl_s": cfg.reservation_ttl_s,
                "ws_idle_timeout_s": cfg.ws_idle_timeout_s,
                "eviction": "at max_sessions a new session replaces an expired one, then a "
                "finished HTTP episode (oldest first); if all are live it is refused with 429. "
                "One client address holds at most max_sessions_per_client live sessions "
                "(429 above). An HTTP episode expires when not stepped within "
                "reservation_ttl_s of its reset, or idle for session_ttl_s; a WS connection "
                "silent for ws_idle_timeout_s is closed. Gone ids answer 410, never-issued 404.",
                "http": "POST /reset issues observation.metadata.session_id and sets the "
                f"{SESSION_COOKIE} cookie to it; /step and /state take the session_id field "
                "(or query parameter), else the cookie, so the plain OpenEnv body "
                '{"action": ...} steps the episode this cookie jar reset last. Without either: '
                "409 (no episode). WS /ws: one session per connection. MCP tools "
                "reset/step/state take the bodies of POST /reset and /step.",
                **self.registry.stats(),
            },
            "limits": {
                "max_body_bytes": cfg.max_body_bytes,
                "ws_max_frame_bytes": cfg.ws_frame_limit,
                "ws_frames": "a message above max_body_bytes gets an error frame and the "
                "session stays; above ws_max_frame_bytes the connection closes with 1009",
                "request_timeout_s": cfg.request_timeout_s,
                "max_batch": cfg.max_batch,
                "keep_alive_s": cfg.keep_alive_s,
            },
        }


def client_of(conn: Any) -> str:
    """The peer's address of a Request or WebSocket (the per-client cap counts by it)."""
    return conn.client.host if conn.client else ""
