import pytest
import uvicorn

from safegrpo.judges.serving.app import create_scorer_app
from tests.uvicorn_thread import start_server, stop_server


@pytest.fixture()
def live_scorer():
    """``start(judge, cfg) -> port``: a scorer server on a uvicorn thread on 127.0.0.1 (port 0),
    stopped after the test."""
    started = []

    def start(judge, cfg):
        server, th, port = start_server(uvicorn.Config(
            create_scorer_app(judge, "len", cfg), host="127.0.0.1", port=0,
            log_level="warning"), wait_s=10)
        started.append((server, th))
        return port

    yield start
    for server, th in started:
        stop_server(server, th, join_s=5)
