"""Arena server settings (kept free of heavy imports: the CLI validates them before loading
any model)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArenaServerConfig:
    """``safegrpo serve arena -c FILE`` / ``--set field=value``."""

    max_sessions: int = 1024
    """Most sessions held at once (HTTP episodes + open WS connections); when every one is live,
    a new reset or connection is refused (429 / CAPACITY_REACHED) instead of dropping one."""
    session_ttl_s: float = 600.0
    """An HTTP session idle this long expires (410 afterwards). WS sessions live as long as their
    connection."""
    max_body_bytes: int = 262_144
    """Largest HTTP body or WS message accepted (413 / an error frame)."""
    max_batch: int = 64
    """Most steps scored in one reward call (steps of concurrent sessions are merged)."""
    max_wait_ms: float = 2.0
    """How long the judge waits for more steps before scoring what it has."""
    keep_alive_s: float = 30.0
    """How long an idle HTTP connection stays open; longer than clients' pool expiry (httpx: 5 s)
    so a pooled connection is never closed just as a client sends a step on it."""
    seed: int = 0
    """Seed of the default reward's judge fit and of the sessions' prompt draws."""

    def __post_init__(self) -> None:
        if self.max_sessions < 1 or self.max_batch < 1:
            raise ValueError("max_sessions and max_batch must be >= 1")
        if self.session_ttl_s <= 0 or self.max_wait_ms < 0 or self.keep_alive_s <= 0:
            raise ValueError("session_ttl_s and keep_alive_s must be > 0 and max_wait_ms >= 0")
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes must be >= 1024")
