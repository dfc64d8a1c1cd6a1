"""How the arena is served: uvicorn settings from ``ArenaServerConfig`` in one place (the CLI,
the OpenEnv entry point and the tests all use them), and a slow-client guard.

uvicorn's h11 protocol has no header or body read timeout: a client that opens a connection and
sends nothing, or sends its headers or body a byte at a time, holds the connection forever
(slowloris). ``SlowClientGuard`` gives each request ``request_timeout_s`` from its first byte (or
from the connection opening) until its whole body has arrived; past that it answers 408 and
closes the connection. The idle time between requests stays uvicorn's ``timeout_keep_alive``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from safegrpo.envs.moderation.server.config import ArenaServerConfig

_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)


class SlowClientGuard(H11Protocol):
    """h11 protocol with a deadline on reading each request (``request_timeout_s``)."""

    request_timeout_s = 10.0  # set per server by ``guarded_protocol``

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._read_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._between_requests():
            self._arm()  # the first byte of a new request starts its clock
        super().data_received(data)
        if self.cycle is not None and not self.cycle.more_body:
            self._disarm()  # the request (headers and body) has fully arrived

    def handle_websocket_upgrade(self, event: Any) -> None:
        self._disarm()  # the WS protocol takes the transport over (its own idle timeout)
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        if self._read_timer is None:
            self._read_timer = self.loop.call_later(self.request_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _too_slow(self) -> None:
        self._read_timer = None
        cycle = self.cycle
        if self.transport.is_closing():
            return
        if cycle is not None and not cycle.response_complete and not cycle.more_body:
            return  # fully received: the app is working on it
        if not (cycle is not None and cycle.more_body and cycle.response_started):
            body = (b'{"detail": "request not received within %gs (request_timeout_s)"}'
                    % self.request_timeout_s)
            self.transport.write(_408 % (len(body), body))
        self.transport.close()


def guarded_protocol(request_timeout_s: float) -> type[SlowClientGuard]:
    return type("ArenaH11Protocol", (SlowClientGuard,), {"request_timeout_s": request_timeout_s})


def uvicorn_config(
    app: Any, host: str = "127.0.0.1", port: int = 8000, **overrides: Any
) -> uvicorn.Config:
    """uvicorn settings for an app made by ``create_app`` (read from ``app.state.arena.cfg``)."""
    cfg: ArenaServerConfig = app.state.arena.cfg
    opts: dict[str, Any] = dict(
        host=host,
        port=port,
        http=guarded_protocol(cfg.request_timeout_s),
        ws="websockets-sansio",
        ws_max_size=cfg.ws_frame_limit,
        timeout_keep_alive=cfg.keep_alive_s,
    )
    return uvicorn.Config(app, **(opts | overrides))
