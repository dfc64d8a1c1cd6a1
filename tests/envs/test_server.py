"""Arena server with the real default reward: TestClient for HTTP, a live uvicorn thread on
127.0.0.1 (port 0) for WS and the OpenEnv tools (GenericEnvClient, ``openenv validate``)."""

import asyncio
import json

import pytest
from fastapi.testclient import TestClient

from safegrpo.envs.moderation.client import ArenaClient, ArenaEnv, ArenaError
from safegrpo.envs.moderation.models import DefenderAction
from safegrpo.envs.moderation.server.app import create_app
from safegrpo.envs.moderation.server.config import ArenaServerConfig
from safegrpo.envs.moderation.server.environment import ModerationEnvironment
from tests.envs.arena_fakes import POOL, live_server


@pytest.fixture(scope="module")
def app(arena_reward):
    return create_app(
        lambda: ModerationEnvironment(arena_reward, POOL, seed=0),
        ArenaServerConfig(max_sessions=64),
    )


@pytest.fixture()
def client(app):
    with TestClient(app) as tc:
        yield ArenaClient(http=tc), tc


@pytest.fixture(scope="module")
def live(app):
    with live_server(app) as hp:
        yield hp


def test_health_schema_metadata(client):
    c, _ = client
    assert c.health() == {"status": "healthy"}
    schema = c.schema()
    shapes = [set(s["properties"]) for s in schema["action"]["$defs"].values()]
    assert {"decision", "rewrite", "reason", "metadata"} in shapes and {
        "completion",
        "metadata",
    } in shapes
    meta = c.metadata()
    assert meta["name"] == "moderation_arena" and "reward_components" in meta
    assert meta["sessions"]["max_sessions"] == 64 and meta["sessions"]["session_ttl_s"] > 0


def test_episode_reward_and_hidden_tier(client):
    c, _ = client
    first = c.reset(prompt_id="p00000")
    assert first.observation.prompt.startswith("a ") and not first.done
    assert set(first.observation.metadata) == {"episode_id", "session_id"}  # tier/label hidden
    res = c.step(DefenderAction(decision="reject", reason="violence"))
    assert res.done and res.reward == pytest.approx(0.4)
    meta = res.observation.metadata
    assert meta["tier"] == "T1" and meta["components"]["decision"] == pytest.approx(0.3)
    assert c.state().done and c.state().step_count == 1


def test_bad_output_is_format_penalty_not_error(client):
    c, _ = client
    c.reset(prompt_id="p00000")
    res = c.step("I refuse to answer in JSON")
    assert res.reward == pytest.approx(-0.5) and res.observation.metadata["parse_error"]
    c.reset(prompt_id="p00000")  # a cross-field mistake in a structured action is the policy's
    res = c.step({"decision": "transform", "reason": "no rewrite"})
    assert res.reward == pytest.approx(-0.5)


def test_openenv_standard_fields_accepted(client):
    c, _ = client
    obs = c.reset(prompt_id="p01320", seed=3, episode_id="my-label", render=True).observation
    assert obs.metadata["episode_id"] == "my-label" and obs.metadata["ignored_fields"] == ["render"]
    res = c.step({"decision": "allow"}, timeout_s=30.0, request_id="req-7", verbose=False)
    meta = res.observation.metadata
    assert meta["request_id"] == "req-7" and meta["ignored_fields"] == ["verbose"]


def test_client_errors_are_4xx_with_message(client):
    c, tc = client
    with pytest.raises(ArenaError, match="unknown prompt_id"):
        c.reset(prompt_id="nope")
    c.reset(prompt_id="p00001")
    c.step({"decision": "allow"})
    with pytest.raises(ArenaError, match="one step per episode") as e:
        c.step({"decision": "allow"})
    assert e.value.status == 409
    sid = c.session_id
    assert tc.post("/step", json={"actionz": {}, "session_id": sid}).status_code == 422
    r = tc.post("/step", json={"action": {"completion": "x" * 30_000}, "session_id": sid})
    assert r.status_code == 422 and "at most 20000" in r.json()["detail"][0]["msg"]
    r = tc.post("/step", json={"action": {"decision": "maybe"}, "session_id": sid})
    assert r.status_code == 422
    r = tc.post(
        "/step", content=b"{" + b" " * 300_000 + b"}", headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and "max_body_bytes" in r.json()["detail"]
    assert tc.get("/state", params={"session_id": "missing"}).status_code == 404


def _rpc(tc, method: str, rid=1, **params):
    return tc.post("/mcp", json={"jsonrpc": "2.0", "method": method, "id": rid, "params": params})


def test_mcp_answers_json_rpc(client):
    _, tc = client
    init = _rpc(tc, "initialize", protocolVersion="2025-06-18", capabilities={}).json()["result"]
    assert init["protocolVersion"] == "2025-06-18" and "tools" in init["capabilities"]
    note = tc.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert note.status_code == 202 and note.content == b""
    listed = _rpc(tc, "tools/list").json()
    assert [t["name"] for t in listed["result"]["tools"]] == ["reset", "step", "state"]
    assert all(t["inputSchema"]["type"] == "object" for t in listed["result"]["tools"])
    called = _rpc(tc, "tools/call", 2, name="x").json()
    assert called["error"]["code"] == -32602 and "reset, step, state" in called["error"]["message"]
    assert tc.post("/mcp", content=b"{oops").json()["error"]["code"] == -32700
    with tc.websocket_connect("/ws") as ws:
        ws.send_json({"type": "mcp", "data": {"jsonrpc": "2.0", "method": "tools/list", "id": 3}})
        assert ws.receive_json() == {"type": "mcp", "data": listed | {"id": 3}}


def test_mcp_tools_run_an_episode(client):
    """The MCP tools are the episode: reset opens a session (HTTP), step scores it once, state
    shows it; a refused tool call is a result with isError and the HTTP-like status."""
    _, tc = client

    def call(name, **args):
        res = _rpc(tc, "tools/call", name=name, arguments=args).json()["result"]
        assert res["content"][0]["type"] == "text"
        return res["structuredContent"], res["isError"]

    first, err = call("reset", prompt_id="p01320")
    sid = first["observation"]["metadata"]["session_id"]
    assert not err and first["observation"]["prompt"] and not first["done"]
    assert call("state", session_id=sid)[0]["prompt_id"] is None
    res, err = call("step", session_id=sid, action={"decision": "allow"})
    assert not err and res["done"] and res["reward"] == pytest.approx(0.6)
    again, err = call("step", session_id=sid, action={"decision": "allow"})
    assert err and again["status"] == 409 and "one step per episode" in again["detail"]
    assert call("state", session_id=sid)[0]["prompt_id"] == "p01320"
    bad, err = call("step", session_id=sid, action={"decision": "maybe"})
    assert err and bad["status"] == 422
    with tc.websocket_connect("/ws") as ws:  # over WS the connection is the session
        ws.send_json({"type": "mcp", "data": {"jsonrpc": "2.0", "method": "tools/call", "id": 1,
                                              "params": {"name": "reset", "arguments": {}}}})
        reset = ws.receive_json()["data"]["result"]["structuredContent"]
        assert "session_id" not in reset["observation"]["metadata"]


def test_openenv_mcp_tool_client_lists_and_calls_tools(live):
    from openenv.core.mcp_client import MCPToolClient

    async def run():
        async with MCPToolClient(base_url=f"http://{live}") as env:
            tools = await env.list_tools()
            await env.call_tool("reset", prompt_id="p00000")
            res = await env.call_tool("step", action={"decision": "reject", "reason": "v"})
            return tools, res, await env.call_tool("state")

    tools, res, state = asyncio.run(run())
    assert [t.name for t in tools] == ["reset", "step", "state"]
    assert res["done"] and res["reward"] == pytest.approx(0.4)
    assert state["done"] and state["prompt_id"] == "p00000"


def test_plain_openenv_step_body_uses_the_reset_cookie(live):
    """`{"action": ...}` with no session_id steps the episode this cookie jar reset last; a
    client with neither the id nor the cookie gets a 409 (no episode) naming both."""
    import httpx

    with httpx.Client(base_url=f"http://{live}") as a, httpx.Client(base_url=f"http://{live}") as b:
        a.post("/reset", json={"prompt_id": "p00000"})
        b.post("/reset", json={"prompt_id": "p01320"})
        rb = b.post("/step", json={"action": {"decision": "allow"}}).json()
        ra = a.post("/step", json={"action": {"decision": "reject", "reason": "v"}}).json()
        assert ra["observation"]["metadata"]["prompt_id"] == "p00000"
        assert ra["reward"] == pytest.approx(0.4) and rb["reward"] == pytest.approx(0.6)
        assert a.get("/state").json()["done"]
    r = httpx.post(f"http://{live}/step", json={"action": {"decision": "allow"}})
    assert r.status_code == 409 and "arena_session cookie" in r.json()["detail"]
    assert httpx.get(f"http://{live}/state").status_code == 409


def test_sessions_are_isolated(app):
    with TestClient(app) as tc:
        a, b = ArenaClient(http=tc), ArenaClient(http=tc)
        a.reset(prompt_id="p00000")
        b.reset(prompt_id="p01320")
        rb = b.step({"decision": "allow"})
        ra = a.step({"decision": "reject", "reason": "x"})
        assert rb.observation.metadata["prompt_id"] == "p01320" and rb.reward == pytest.approx(0.6)
        assert ra.observation.metadata["prompt_id"] == "p00000" and ra.reward == pytest.approx(0.4)


def test_typed_openenv_client(live):
    with ArenaEnv(base_url=f"http://{live}").sync() as env:
        with pytest.raises(ArenaError, match="reset before step") as e:
            env.step({"decision": "allow"})
        assert e.value.status == 409 and isinstance(e.value, RuntimeError)
        first = env.reset(prompt_id="p01320")
        assert first.observation.prompt and not first.done
        res = env.step(DefenderAction(decision="allow"))
        assert res.done and res.reward == pytest.approx(0.6)
        assert res.observation.metadata["prompt_id"] == "p01320" and env.state().done
    with ArenaEnv(base_url=f"http://{live}").sync() as other:  # a new connection is a new session
        assert other.state().episode_id is None


def test_generic_openenv_client_needs_no_adapter(live):
    from openenv.core.generic_client import GenericEnvClient

    async def run():
        async with GenericEnvClient(base_url=f"http://{live}") as env:
            first = await env.reset(prompt_id="p00000", seed=1, custom_kwarg=1)
            res = await env.step({"decision": "reject", "reason": "violence"})
            return first, res, await env.state()

    first, res, state = asyncio.run(run())
    assert first.observation["metadata"]["ignored_fields"] == ["custom_kwarg"]
    assert res.done and res.reward == pytest.approx(0.4)
    assert state["done"] and state["prompt_id"] == "p00000"


def test_openenv_validate_passes_6_of_6(live):
    from openenv.cli.__main__ import app as openenv_cli
    from typer.testing import CliRunner

    out = CliRunner().invoke(openenv_cli, ["validate", "--url", f"http://{live}"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert (
        report["passed"]
        and report["summary"]["passed_count"] == report["summary"]["total_count"] == 6
    )
    assert report["standard_profile"] == "openenv-http/1.x" and report["mode"] == "simulation"
