"""Session registry of the arena server, with an explicit eviction policy.

- Ids are server-issued (``secrets.token_urlsafe``, 256 bits): a client can neither pick nor
  guess another client's session, and a reset never touches an existing one.
- At most ``max_sessions`` sessions (HTTP episodes + open WS connections). When full, a new
  session first takes the place of an expired one (HTTP, idle > ``ttl_s``), then of a finished
  HTTP episode (oldest first); if every session is live, it is refused (429) - a live episode
  is never dropped to make room.
- An HTTP session idle for more than ``ttl_s`` expires. Asking for an expired or evicted id
  answers 410 with the reason (remembered for the last ``max_sessions`` such ids); an id never
  issued answers 404. WS sessions end with their connection and never expire.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from safegrpo.envs.moderation.server.environment import EnvError, ModerationEnvironment


@dataclass
class Session:
    env: ModerationEnvironment
    kind: str  # "http" | "ws"
    last_used: float = field(default=0.0)


class SessionRegistry:
    def __init__(
        self, max_sessions: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ):
        if max_sessions < 1 or ttl_s <= 0:
            raise ValueError("max_sessions must be >= 1 and ttl_s > 0")
        self.max_sessions, self.ttl_s, self.clock = max_sessions, ttl_s, clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # least recently used first
        self._gone: OrderedDict[str, str] = OrderedDict()  # id -> why it is gone (bounded)
        self._lock = threading.Lock()
        self.evicted = {"expired": 0, "finished": 0}

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, env: ModerationEnvironment, kind: str) -> str:
        """Register ``env``; 429 when every slot holds a live session."""
        with self._lock:
            if len(self._sessions) >= self.max_sessions:
                self._make_room()
            sid = secrets.token_urlsafe(32)
            self._sessions[sid] = Session(env, kind, self.clock())
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
            if kind == "http" and now - s.last_used > self.ttl_s and not s.env.pending:
                self._drop(sid, f"expired after {self.ttl_s:g} s idle", "expired")
                raise EnvError(
                    410,
                    f"session {sid[:8]}... expired after {self.ttl_s:g} s idle "
                    "(session_ttl_s in /metadata)",
                )
            s.last_used = now
            self._sessions.move_to_end(sid)
            return s.env

    def close(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)

    def stats(self) -> dict[str, int]:
        with self._lock:
            live = sum(1 for s in self._sessions.values() if s.env.live or s.kind == "ws")
            return {"sessions": len(self._sessions), "live": live, **self.evicted}

    def _make_room(self) -> None:
        now = self.clock()
        for sid, s in list(self._sessions.items()):  # oldest use first
            if s.kind == "http" and now - s.last_used > self.ttl_s and not s.env.pending:
                self._drop(sid, f"expired after {self.ttl_s:g} s idle", "expired")
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
