"""Arena server against a hostile outside tester (issue 23): nothing predicts the label before the
step, lone surrogates are 4xx/JSON-RPC errors, the WS frame bound is exact, one client cannot take
every slot, and slow connections are closed (live uvicorn on 127.0.0.1 with `serve arena`'s
settings)."""

import asyncio
import json
import socket
import time

import httpx
import pytest
import websockets
from websockets.sync.client import connect

from safegrpo.envs.moderation.server.environment import ModerationEnvironment
from safegrpo.envs.moderation.server.sessions import SessionRegistry
from tests.envs.arena_fakes import POOL, FakeReward, fake_app, live_server

pytestmark = pytest.mark.timeout(120)
JSON = {"content-type": "application/json"}


def _send(ws, frame) -> dict:
    ws.send(frame)
    return json.loads(ws.recv(timeout=30))


def test_nothing_before_the_step_predicts_the_label():
    """Pool ids come in label/tier blocks (p00000.. unsafe, p01320.. benign): /state used to
    return prompt_id before the step. Now an unsafe and a benign episode look alike until then."""
    with live_server(fake_app()) as hp, httpx.Client(base_url=f"http://{hp}") as c:
        seen = []
        for pid in ("p00000", "p01320"):
            obs = c.post("/reset", json={"prompt_id": pid}).json()["observation"]
            sid = obs["metadata"]["session_id"]
            before = c.get("/state", params={"session_id": sid}).json()
            assert before == {"episode_id": obs["metadata"]["episode_id"], "step_count": 0,
                              "prompt_id": None, "done": False}
            assert set(obs["metadata"]) == {"episode_id", "session_id"}
            step = c.post("/step", json={"session_id": sid, "action": {"decision": "allow"}})
            assert step.json()["observation"]["metadata"]["prompt_id"] == pid
            assert c.get("/state", params={"session_id": sid}).json()["prompt_id"] == pid
            seen.append(before["episode_id"])
        assert len({len(e) for e in seen}) == 1 and seen[0] != seen[1]  # random, same shape
        with connect(f"ws://{hp}/ws") as ws:
            _send(ws, json.dumps({"type": "reset", "data": {"prompt_id": "p00000"}}))
            assert _send(ws, '{"type": "state"}')["data"]["prompt_id"] is None


def test_lone_surrogates_are_client_errors_not_500():
    with live_server(fake_app()) as hp, httpx.Client(base_url=f"http://{hp}") as c:
        body = b'{"jsonrpc": "2.0", "method": "tools/list", "id": "\\ud800"}'
        r = c.post("/mcp", content=body, headers=JSON)
        assert r.status_code == 200 and r.json()["error"]["code"] == -32700, r.text
        r = c.post("/reset", content=b'{"episode_id": "\\udc00"}', headers=JSON)
        assert r.status_code == 422
        with connect(f"ws://{hp}/ws") as ws:
            for frame in (
                '{"type": "reset", "data": {"episode_id": "\\ud800"}}',
                '{"type": "mcp", "data": {"jsonrpc": "2.0", "method": "tools/list", '
                '"id": "\\ud800"}}',
            ):
                reply = _send(ws, frame)
                assert reply["type"] == "error" and reply["data"]["status"] == 400, reply
            ok = _send(ws, json.dumps({"type": "reset", "data": {"episode_id": "\U0001f600"}}))
            assert ok["data"]["observation"]["metadata"]["episode_id"] == "\U0001f600"


def test_ws_frame_bound_is_exact_and_documented():
    """Up to ws_max_frame_bytes an oversized message is an error frame and the session stays;
    above it the WS protocol cannot skip the frame, so the connection closes with 1009."""
    app = fake_app(max_body_bytes=8192, ws_max_frame_bytes=65_536)
    with live_server(app) as hp:
        limits = httpx.get(f"http://{hp}/metadata").json()["limits"]
        assert limits["ws_max_frame_bytes"] == 65_536 and limits["max_body_bytes"] == 8192
        with connect(f"ws://{hp}/ws", max_size=None) as ws:
            _send(ws, json.dumps({"type": "reset", "data": {}}))
            big = json.dumps({"type": "step", "data": {"completion": "x" * 65_000}})
            reply = _send(ws, big)
            assert reply["type"] == "error" and reply["data"]["status"] == 413
            assert _send(ws, '{"type": "step", "data": {"decision": "allow"}}')["type"] == (
                "observation"
            )
        with connect(f"ws://{hp}/ws", max_size=None) as ws:
            ws.send("x" * 65_537)
            with pytest.raises(websockets.ConnectionClosed) as e:
                ws.recv(timeout=30)
        assert e.value.rcvd.code == 1009


def test_idle_ws_connections_are_closed_and_free_their_slot():
    with live_server(fake_app(max_sessions=1, ws_idle_timeout_s=0.5)) as hp:

        async def run():
            async with websockets.connect(f"ws://{hp}/ws") as idle:
                told = json.loads(await asyncio.wait_for(idle.recv(), 10))
                await idle.wait_closed()
            async with websockets.connect(f"ws://{hp}/ws") as fresh:
                await fresh.send(json.dumps({"type": "reset", "data": {}}))
                return told, idle.close_code, json.loads(await fresh.recv())

        told, code, fresh = asyncio.run(run())
    assert told["data"]["status"] == 408 and "ws_idle_timeout_s" in told["data"]["message"]
    assert code == 1001 and fresh["type"] == "observation"


def test_unstepped_resets_hold_a_slot_only_for_the_reservation_ttl():
    app = fake_app(max_sessions=2, reservation_ttl_s=1.0, session_ttl_s=600)
    with live_server(app) as hp, httpx.Client(base_url=f"http://{hp}") as c:
        sids = [c.post("/reset", json={}).json()["observation"]["metadata"]["session_id"]
                for _ in range(2)]
        assert c.post("/reset", json={}).status_code == 429
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.6:  # reading the state does not extend the reservation
            assert c.get("/state", params={"session_id": sids[1]}).status_code == 200
            time.sleep(0.1)
        time.sleep(0.5)
        assert c.post("/reset", json={}).status_code == 200
        r = c.post("/step", json={"session_id": sids[1], "action": {"decision": "allow"}})
        assert r.status_code == 410 and "reservation_ttl_s" in r.json()["detail"]
        meta = c.get("/metadata").json()["sessions"]
        assert meta["reservation_ttl_s"] == 1.0 and meta["ws_idle_timeout_s"] > 0


def test_one_client_cannot_take_every_slot():
    app = fake_app(max_sessions=10, max_sessions_per_client=3)
    with live_server(app) as hp, httpx.Client(base_url=f"http://{hp}") as c:
        with connect(f"ws://{hp}/ws"):
            sids = [c.post("/reset", json={}).json()["observation"]["metadata"]["session_id"]
                    for _ in range(2)]
            r = c.post("/reset", json={})
            assert r.status_code == 429 and "max_sessions_per_client=3" in r.json()["detail"]
            with connect(f"ws://{hp}/ws") as refused:
                assert json.loads(refused.recv(timeout=10))["data"]["status"] == 429
            step = c.post("/step", json={"session_id": sids[0], "action": {"decision": "allow"}})
            assert step.status_code == 200  # a finished episode no longer counts
            assert c.post("/reset", json={}).status_code == 200
        assert c.get("/metadata").json()["sessions"]["max_sessions_per_client"] == 3


def test_per_client_cap_counts_each_address_apart():
    reg = SessionRegistry(max_sessions=4, ttl_s=10, per_client=2)
    envs = [ModerationEnvironment(FakeReward(), POOL) for _ in range(4)]
    for e in envs:
        e.reset()
    reg.open(envs[0], "http", "10.0.0.1")
    reg.open(envs[1], "ws", "10.0.0.1")
    with pytest.raises(Exception, match="per-client cap") as e:
        reg.open(envs[2], "http", "10.0.0.1")
    assert e.value.status == 429
    reg.open(envs[2], "http", "10.0.0.2")
    reg.open(envs[3], "http", "10.0.0.2")


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    sock.settimeout(seconds)
    got = b""
    try:
        while chunk := sock.recv(4096):
            got += chunk
    except TimeoutError:
        return False, got
    return True, got


def test_slow_connections_are_closed_and_others_are_served():
    """Silent, slow-header and slow-body connections get 408 and are closed after
    request_timeout_s (they were never closed); a normal client is served meanwhile."""
    with live_server(fake_app(request_timeout_s=0.5)) as hp:
        host, port = hp.split(":")
        slow = {
            "silent": b"",
            "headers": b"POST /reset HTTP/1.1\r\nHost: x\r\n",
            "body": b"POST /reset HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 40\r\n\r\n{",
        }
        socks = {}
        for name, data in slow.items():
            socks[name] = socket.create_connection((host, int(port)))
            socks[name].sendall(data)
        limits = httpx.get(f"http://{hp}/metadata").json()["limits"]
        assert limits["request_timeout_s"] == 0.5
        for name, s in socks.items():
            with s:
                closed, got = _closed_within(s, 5)
            assert closed and got.startswith(b"HTTP/1.1 408"), (name, got[:80])
        with httpx.Client(base_url=f"http://{hp}") as c:  # keep-alive: one connection, 2 requests
            assert c.post("/reset", json={}).status_code == 200
            time.sleep(0.8)  # idle between requests is keep_alive_s, not request_timeout_s
            assert c.post("/reset", json={}).status_code == 200
