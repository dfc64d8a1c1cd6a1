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
    max_sessions_per_client: int = 256
    """Most live sessions (unstepped HTTP episodes + open WS connections) one client address may
    hold; above it that client's resets and connections get 429, so one client cannot take every
    slot. Clients behind one proxy share an address (see uvicorn's ``forwarded_allow_ips``)."""
    session_ttl_s: float = 600.0
    """An HTTP session idle this long expires (410 afterwards)."""
    reservation_ttl_s: float = 60.0
    """An HTTP episode not stepped within this long after its reset expires (410 afterwards) and
    frees its slot; reading /state does not extend it."""
    ws_idle_timeout_s: float = 60.0
    """A WS connection that sends no message for this long gets an error frame and is closed,
    freeing its slot (a step being scored is not idle time)."""
    max_body_bytes: int = 262_144
    """Largest HTTP body or WS message accepted (413 / an error frame)."""
    ws_max_frame_bytes: int | None = None
    """Largest WS message read at all (None: 4 x max_body_bytes). Messages up to it but above
    max_body_bytes get an error frame and the session stays; a larger one cannot be skipped by
    the WS protocol, so the connection closes with 1009 (message too big) and its session ends."""
    request_timeout_s: float = 10.0
    """An HTTP request's headers and body must all arrive within this many seconds of its first
    byte (or of the connection opening); a slower client gets 408 and the connection is closed."""
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
        if min(self.max_sessions, self.max_batch, self.max_sessions_per_client) < 1:
            raise ValueError("max_sessions, max_sessions_per_client and max_batch must be >= 1")
        times = (self.session_ttl_s, self.reservation_ttl_s, self.ws_idle_timeout_s,
                 self.request_timeout_s, self.keep_alive_s)
        if min(times) <= 0 or self.max_wait_ms < 0:
            raise ValueError("session_ttl_s, reservation_ttl_s, ws_idle_timeout_s, "
                             "request_timeout_s and keep_alive_s must be > 0, max_wait_ms >= 0")
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes must be >= 1024")
        if self.ws_max_frame_bytes is not None and self.ws_max_frame_bytes < self.max_body_bytes:
            raise ValueError("ws_max_frame_bytes must be >= max_body_bytes (or null)")

    @property
    def ws_frame_limit(self) -> int:
        """The WS protocol's message size limit (``ws_max_frame_bytes`` resolved)."""
        return self.ws_max_frame_bytes or 4 * self.max_body_bytes
