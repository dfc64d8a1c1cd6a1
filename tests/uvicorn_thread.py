"""One way for tests to serve an ASGI app for real: uvicorn on a thread, 127.0.0.1, port 0."""

from __future__ import annotations

import threading
import time

import uvicorn


def start_server(config: uvicorn.Config, wait_s: float) -> tuple[uvicorn.Server, threading.Thread,
                                                                 int]:
    """Start ``config`` on a daemon thread; (server, thread, bound port) once it is up."""
    server = uvicorn.Server(config)
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    for _ in range(int(wait_s / 0.05)):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    return server, th, server.servers[0].sockets[0].getsockname()[1]


def stop_server(server: uvicorn.Server, th: threading.Thread, join_s: float) -> None:
    server.should_exit = True
    th.join(timeout=join_s)
