"""Session registry of the arena server, with an explicit eviction policy.

- Ids are server-issued (``secrets.token_urlsafe``, 256 bits): a client can neither pick nor
  guess another client's session, and a reset never touches an existing one.
- At most ``max_sessions`` sessions (HTTP episodes + open WS connections). When full, a new
  session first takes the place of an expired one, then of a finished HTTP episode (oldest
  first); if every session is live, it is refused (429) - a live episode is never dropped.
- One client address holds at most ``max_sessions_per_client`` live sessions (unstepped or
  mid-step HTTP episodes + WS connections); above it that client gets 429.
- An HTTP session expires when idle for more than ``ttl_s``, or when its episode is not stepped
  within ``reservation_ttl_s`` of the reset (reads do not extend that). Asking for an expired or
  evicted id answers 410 with the reason (remembered for the last ``max_sessions`` such ids); an
  id never issued answers 404. WS sessions end with their connection (see ``ws.py``).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from safegrpo.envs.moderation.server.environment import EnvError, ModerationEnvironment


@dataclass
class Session:
    env: ModerationEnvironment
    kind: str  # "http" | "ws"
    client: str  # the peer's address
    opened: float
    last_used: float


class SessionRegistry:
    def __init__(
        self,
        max_sessions: int,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        reservation_ttl_s: float | None = None,
        per_client: int | None = None,
    ):
        if max_sessions < 1 or ttl_s <= 0:
            raise ValueError("max_sessions must be >= 1 and ttl_s > 0")
        self.max_sessions, self.ttl_s, self.clock = max_sessions, ttl_s, clock
        self.reservation_ttl_s = reservation_ttl_s or ttl_s
        self.per_client = per_client or max_sessions + 1  # None: no per-client cap
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # least recently used first
        self._gone: OrderedDict[str, str] = OrderedDict()  # id -> why it is gone (bounded)
        self._lock = threading.Lock()
        self.evicted = {"expired": 0, "finished": 0}

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, env: ModerationEnvironment, kind: str, client: str = "") -> str:
        """Register ``env``; 429 when ``client`` is at its cap or every slot holds a live
        session."""
        with self._lock:
            now = self.clock()
            held = sum(
                1 for s in self._sessions.values() if s.client == client and self._live(s, now)
            )
            if held >= self.per_client:
                raise EnvError(
                    429,
                    f"per-client cap: this client holds {held} live sessions "
                    f"(max_sessions_per_client={self.per_client}); finish episodes or retry later",
                )
            if len(self._sessions) >= self.max_sessions:
                self._make_room(now)
            sid = secrets.token_urlsafe(32)
            self._sessions[sid] = Session(env, kind, client, now, now)
            return sid

    def get(self, sid: str, kind: str = "http") -> ModerationEnvironment:
        """The session's environment (marks it used): 404 unknown, 410 expired or evicted."""
        with self._lock:
            s = self._sessions.get(sid)
            if s is None or s.kind != kind:
                why = self._gone.get(sid) if s is None else None
                if why is not None:
                    raise EnvError(410, f"session {sid[:8]}... is gone: {why}")
                raise EnvError(
                    404,
                    "unknown session_id (sessions come from POST /reset: "
                    "observation.metadata.session_id)",
                )
            now = self.clock()
            why = self._expiry(s, now)
            if why is not None:
                self._drop(sid, why, "expired")
                raise EnvError(410, f"session {sid[:8]}... {why} (see /metadata sessions)")
            s.last_used = now
            self._sessions.move_to_end(sid)
            return s.env

    def close(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)

    def stats(self) -> dict[str, int]:
        with self._lock:
            now = self.clock()
            live = sum(1 for s in self._sessions.values() if self._live(s, now))
            return {"sessions": len(self._sessions), "live": live, **self.evicted}

    def _expiry(self, s: Session, now: float) -> str | None:
        """Why an HTTP session has expired, or None (a WS or mid-step session never does)."""
        if s.kind != "http" or s.env.pending:
            return None
        if s.env.live and now - s.opened > self.reservation_ttl_s:
            return f"expired: not stepped within {self.reservation_ttl_s:g} s (reservation_ttl_s)"
        if now - s.last_used > self.ttl_s:
            return f"expired after {self.ttl_s:g} s idle (session_ttl_s)"
        return None

    def _live(self, s: Session, now: float) -> bool:
        """Holds a slot: a WS connection, a step being scored or an unexpired open episode."""
        if s.kind == "ws" or s.env.pending:
            return True
        return s.env.live and self._expiry(s, now) is None

    def _make_room(self, now: float) -> None:
        for sid, s in list(self._sessions.items()):  # oldest use first
            why = self._expiry(s, now)
            if why is not None:
                self._drop(sid, why, "expired")
                return
        for sid, s in list(self._sessions.items()):
            if s.kind == "http" and not s.env.live and not s.env.pending:
                self._drop(sid, "finished episode evicted to make room (max_sessions)", "finished")
                return
        raise EnvError(
            429,
            f"arena at capacity: {len(self._sessions)} live sessions "
            f"(max_sessions={self.max_sessions}); finish episodes or retry later",
        )

    def _drop(self, sid: str, why: str, counter: str) -> None:
        del self._sessions[sid]
        self.evicted[counter] += 1
        self._gone[sid] = why
        while len(self._gone) > self.max_sessions:
            self._gone.popitem(last=False)
