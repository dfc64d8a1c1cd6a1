import threading
import time

import pytest
import uvicorn

from safegrpo.judges.serving.app import create_scorer_app


@pytest.fixture()
def live_scorer():
    """``start(judge, cfg) -> port``: a scorer server on a uvicorn thread on 127.0.0.1 (port 0),
    stopped after the test."""
    started = []

    def start(judge, cfg):
        server = uvicorn.Server(uvicorn.Config(create_scorer_app(judge, "len", cfg),
                                               host="127.0.0.1", port=0, log_level="warning"))
        th = threading.Thread(target=server.run, daemon=True)
        th.start()
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        started.append((server, th))
        return server.servers[0].sockets[0].getsockname()[1]

    yield start
    for server, th in started:
        server.should_exit = True
        th.join(timeout=5)
