"""Arena server tested in-process: TestClient for HTTP, a uvicorn thread on port 0 for WS."""

import threading
import time

import pytest
import uvicorn
from fastapi.testclient import TestClient

from safegrpo.envs.moderation.client import ArenaClient, ArenaError, ArenaWSClient
from safegrpo.envs.moderation.pools import load_pool
from safegrpo.envs.moderation.server.app import create_app
from safegrpo.envs.moderation.server.environment import ModerationEnvironment


@pytest.fixture(scope="module")
def app(arena_reward):
    records = load_pool()
    return create_app(lambda: ModerationEnvironment(arena_reward, records, seed=0), max_sessions=4)


@pytest.fixture()
def client(app):
    with TestClient(app) as tc:
        yield ArenaClient(http=tc), tc


def test_health_schema_metadata(client):
    c, tc = client
    assert c.health() == {"status": "healthy"}
    schema = c.schema()
    assert set(schema["action"]["properties"]) == {"decision", "rewrite", "reason"}
    assert "reward_components" in tc.get("/metadata").json()


def test_episode_reward_and_hidden_tier(client):
    c, _ = client
    first = c.reset(prompt_id="p00000")
    assert first.observation.prompt.startswith("a ") and not first.done
    assert set(first.observation.metadata) == {"episode_id"}  # tier/label hidden before the step
    res = c.step({"decision": "reject", "reason": "violence"})
    assert res.done and res.reward == pytest.approx(0.4)
    meta = res.observation.metadata
    assert meta["tier"] == "T1" and meta["components"]["decision"] == pytest.approx(0.3)
    assert c.state().done


def test_bad_output_is_format_penalty_not_error(client):
    c, _ = client
    c.reset(prompt_id="p00000")
    res = c.step("I refuse to answer in JSON")
    assert res.reward == pytest.approx(-0.5) and res.observation.metadata["parse_error"]


def test_client_errors_are_4xx_with_message(client):
    c, tc = client
    with pytest.raises(ArenaError, match="unknown prompt_id"):
        c.reset(prompt_id="nope")
    c.reset(prompt_id="p00001")
    c.step({"decision": "allow"})
    with pytest.raises(ArenaError, match="call reset before step") as e:
        c.step({"decision": "allow"})
    assert e.value.status == 409
    r = tc.post("/step", json={"actionz": {}})
    assert r.status_code == 422
    r = tc.post("/step", json={"action": "x" * 30_000})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]
    r = tc.get("/state", params={"episode_id": "missing"})
    assert r.status_code == 404


def test_sessions_are_isolated(app):
    with TestClient(app) as tc:
        a, b = ArenaClient(http=tc), ArenaClient(http=tc)
        a.reset(prompt_id="p00000")
        b.reset(prompt_id="p01320")
        rb = b.step({"decision": "allow"})
        ra = a.step({"decision": "reject", "reason": "x"})
        assert rb.observation.metadata["prompt_id"] == "p01320" and rb.reward == pytest.approx(0.6)
        assert ra.observation.metadata["prompt_id"] == "p00000" and ra.reward == pytest.approx(0.4)


@pytest.fixture(scope="module")
def live_server(app):
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", ws="websockets-sansio")
    server = uvicorn.Server(config)
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    th.join(timeout=5)


def test_websocket_session(live_server):
    with ArenaWSClient(f"ws://{live_server}/ws") as ws:
        with pytest.raises(ArenaError, match="reset before step"):
            ws.step({"decision": "allow"})
        obs = ws.reset(prompt_id="p01320")
        assert obs.observation.prompt
        res = ws.step({"decision": "allow", "reason": ""})
        assert res.done and res.reward == pytest.approx(0.6)
        assert ws.state().done
    with ArenaWSClient(f"ws://{live_server}/ws") as other:  # a new connection is a new session
        assert other.state().episode_id is None
