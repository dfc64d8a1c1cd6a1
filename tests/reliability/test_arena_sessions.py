"""Arena sessions under concurrent clients (live uvicorn on 127.0.0.1, bounded loops): no hijack,
one step per episode, explicit capacity and TTL, no cross-talk, judges off the event loop."""

import asyncio
import json
import time

import httpx
import pytest
import websockets

from safegrpo.envs.moderation.server.environment import ModerationEnvironment
from safegrpo.envs.moderation.server.sessions import SessionRegistry
from tests.envs.arena_fakes import POOL, FakeReward, fake_app, fake_total, live_server

pytestmark = pytest.mark.timeout(120)
DECISIONS = ("allow", "reject", "transform")


def _action(i: int) -> dict:
    d = DECISIONS[i % 3]
    return (
        {"decision": d, "rewrite": "a quiet garden at noon"}
        if d == "transform"
        else {"decision": d}
    )


async def _reset(c: httpx.AsyncClient, **kw) -> dict:
    r = await c.post("/reset", json=kw)
    assert r.status_code == 200, r.text
    return r.json()["observation"]


def test_reset_never_overwrites_a_live_episode():
    with live_server(fake_app()) as hp:

        async def run():
            async with httpx.AsyncClient(base_url=f"http://{hp}") as c:
                a = await _reset(c, prompt_id="p00000")
                sid_a, ep_a = a["metadata"]["session_id"], a["metadata"]["episode_id"]
                # another client replays A's ids in every field it can
                b = await _reset(c, prompt_id="p01320", episode_id=ep_a, session_id=sid_a)
                assert b["metadata"]["session_id"] != sid_a
                r = await c.post(
                    "/step", json={"session_id": sid_a, "action": {"decision": "reject"}}
                )
                ids = {(await _reset(c))["metadata"]["session_id"] for _ in range(50)}
                return a, r.json(), ids

        a, res, ids = asyncio.run(run())
    assert res["observation"]["metadata"]["prompt_id"] == "p00000"
    assert res["reward"] == fake_total(a["prompt"], "reject")
    assert len(ids) == 50 and min(len(s) for s in ids) >= 43  # 32 random bytes, urlsafe base64


def test_exactly_one_step_per_episode_under_concurrency():
    reward = FakeReward(delay_s=0.01)
    with live_server(fake_app(reward)) as hp:

        async def run():
            async with httpx.AsyncClient(base_url=f"http://{hp}", timeout=60) as c:
                sids = [(await _reset(c))["metadata"]["session_id"] for _ in range(50)]
                steps = [
                    c.post("/step", json={"session_id": s, "action": _action(i % 2)})
                    for s in sids
                    for i in range(2)
                ]
                return await asyncio.gather(*steps)

        replies = asyncio.run(run())
    codes = [r.status_code for r in replies]
    for k in range(50):
        assert sorted(codes[2 * k : 2 * k + 2]) == [200, 409], (k, codes[2 * k : 2 * k + 2])
    assert reward.rows == 50  # no episode was scored twice


def test_capacity_refuses_new_sessions_instead_of_dropping_live_ones():
    with live_server(fake_app(max_sessions=50)) as hp:

        async def run():
            async with httpx.AsyncClient(base_url=f"http://{hp}", timeout=60) as c:
                first = await asyncio.gather(*[c.post("/reset", json={}) for _ in range(60)])
                ok = [
                    r.json()["observation"]["metadata"]["session_id"]
                    for r in first
                    if r.status_code == 200
                ]
                refused = [r for r in first if r.status_code != 200]
                steps = await asyncio.gather(
                    *[
                        c.post("/step", json={"session_id": s, "action": {"decision": "allow"}})
                        for s in ok
                    ]
                )
                again = await c.post("/reset", json={})  # room is made from a finished episode
                gone = await c.get("/state", params={"session_id": ok[0]})
                meta = (await c.get("/metadata")).json()["sessions"]
                return ok, refused, steps, again, gone, meta

        ok, refused, steps, again, gone, meta = asyncio.run(run())
    assert len(ok) == 50 and len(refused) == 10
    assert all(r.status_code == 429 and "capacity" in r.json()["detail"] for r in refused)
    assert [r.status_code for r in steps] == [200] * 50  # no live episode was lost
    assert again.status_code == 200
    assert gone.status_code == 410 and "finished episode evicted" in gone.json()["detail"]
    assert meta["max_sessions"] == 50 and meta["finished"] == 1


def test_ws_connections_count_toward_capacity():
    with live_server(fake_app(max_sessions=1)) as hp:

        async def run():
            async with websockets.connect(f"ws://{hp}/ws") as first:
                async with websockets.connect(f"ws://{hp}/ws") as second:
                    refused = json.loads(await second.recv())
                    await second.wait_closed()
                await first.send(json.dumps({"type": "reset", "data": {}}))
                return refused, second.close_code, json.loads(await first.recv())

        refused, code, kept = asyncio.run(run())
    assert refused["data"]["code"] == "CAPACITY_REACHED" and refused["data"]["status"] == 429
    assert code == 1013 and kept["type"] == "observation"


def test_step_not_started_within_timeout_leaves_the_episode_open():
    with live_server(fake_app(FakeReward(delay_s=1.0))) as hp:

        async def run():
            async with httpx.AsyncClient(base_url=f"http://{hp}", timeout=30) as c:
                a, b = [(await _reset(c))["metadata"]["session_id"] for _ in range(2)]
                busy = asyncio.create_task(
                    c.post("/step", json={"session_id": a, "action": _action(0)})
                )
                await asyncio.sleep(0.3)  # a's step holds the judge
                late = await c.post(
                    "/step", json={"session_id": b, "action": _action(1), "timeout_s": 0.2}
                )
                state = (await c.get("/state", params={"session_id": b})).json()
                await busy
                retry = await c.post("/step", json={"session_id": b, "action": _action(1)})
                return late, state, retry

        late, state, retry = asyncio.run(run())
    assert late.status_code == 429 and "timeout_s" in late.json()["detail"]
    assert not state["done"] and retry.status_code == 200


def test_idle_sessions_expire_explicitly():
    with live_server(fake_app(session_ttl_s=0.3)) as hp, httpx.Client(base_url=f"http://{hp}") as c:
        sid = c.post("/reset", json={}).json()["observation"]["metadata"]["session_id"]
        assert c.get("/metadata").json()["sessions"]["session_ttl_s"] == 0.3
        time.sleep(0.6)
        r = c.post("/step", json={"session_id": sid, "action": {"decision": "allow"}})
        assert r.status_code == 410 and "expired after 0.3 s idle" in r.json()["detail"]
        assert c.get("/state", params={"session_id": sid}).status_code == 410


def test_registry_policy_with_a_fake_clock():
    now = [0.0]
    reg = SessionRegistry(max_sessions=2, ttl_s=10, clock=lambda: now[0])
    envs = [ModerationEnvironment(FakeReward(), POOL) for _ in range(4)]
    for e in envs:
        e.reset()
    a, b = reg.open(envs[0], "http"), reg.open(envs[1], "http")
    with pytest.raises(Exception, match="capacity") as e:
        reg.open(envs[2], "http")
    assert e.value.status == 429
    envs[1].pending = True  # mid-step: never expires
    now[0] = 11.0
    c = reg.open(envs[2], "http")  # replaces the expired, idle one (a), not the pending one (b)
    assert reg.get(b) is envs[1] and reg.get(c) is envs[2]
    with pytest.raises(Exception, match="expired") as e:
        reg.get(a)
    assert e.value.status == 410
    with pytest.raises(Exception, match="unknown session_id") as e:
        reg.get("never-issued")
    assert e.value.status == 404


def test_plain_step_bodies_of_100_concurrent_clients_step_their_own_episodes():
    """The plain OpenEnv body {"action": ...} finds the session by the cookie /reset set, so 100
    concurrent clients (one cookie jar each) each step their own episode; with neither a
    session_id nor the cookie the step is a 409 (no episode) and touches no episode (stepping
    "the newest" episode instead made 99 of 100 concurrent clients fail with 409)."""
    reward = FakeReward()
    with live_server(fake_app(reward)) as hp:

        async def client(i: int):
            async with httpx.AsyncClient(base_url=f"http://{hp}", timeout=60) as c:
                obs = await _reset(c)
                bare = await c.post("/step", json={"action": _action(i)})
                again = await c.post(
                    "/step",
                    json={"action": _action(i), "session_id": obs["metadata"]["session_id"]},
                )
                return obs, bare, again

        async def run():
            async with httpx.AsyncClient(base_url=f"http://{hp}", timeout=60) as jarless:
                nobody = await jarless.post("/step", json={"action": _action(0)})
            return nobody, await asyncio.gather(*[client(i) for i in range(100)])

        nobody, out = asyncio.run(run())
    assert nobody.status_code == 409 and "session_id" in nobody.json()["detail"]
    for i, (obs, bare, again) in enumerate(out):
        assert bare.status_code == 200 and again.status_code == 409
        assert bare.json()["reward"] == fake_total(obs["prompt"], _action(i)["decision"])
        assert bare.json()["observation"]["metadata"]["episode_id"] == obs["metadata"]["episode_id"]
    assert reward.rows == 100


def test_200_concurrent_ws_and_http_episodes_lose_nothing():
    reward = FakeReward(delay_s=0.005)
    with live_server(fake_app(reward)) as hp:

        async def ws_episode(i: int):
            async with websockets.connect(f"ws://{hp}/ws") as ws:
                await ws.send(json.dumps({"type": "reset", "data": {}}))
                obs = json.loads(await ws.recv())["data"]["observation"]
                await ws.send(json.dumps({"type": "step", "data": _action(i)}))
                res = json.loads(await ws.recv())
                await ws.send(json.dumps({"type": "step", "data": _action(i)}))
                twice = json.loads(await ws.recv())
                return obs, res["data"], twice["data"].get("status")

        async def http_episode(c: httpx.AsyncClient, i: int):
            obs = await _reset(c)
            body = {"action": _action(i), "session_id": obs["metadata"]["session_id"]}
            res, twice = await asyncio.gather(
                c.post("/step", json=body), c.post("/step", json=body)
            )
            ok = [r for r in (res, twice) if r.status_code == 200]
            return (
                obs,
                ok[0].json() if len(ok) == 1 else None,
                sorted([res.status_code, twice.status_code]),
            )

        async def run():
            limits = httpx.Limits(max_connections=200)
            async with httpx.AsyncClient(base_url=f"http://{hp}", timeout=120, limits=limits) as c:
                return await asyncio.gather(
                    *[ws_episode(i) for i in range(100)], *[http_episode(c, i) for i in range(100)]
                )

        out = asyncio.run(run())
    for i, (obs, res, twice) in enumerate(out):
        assert res is not None, f"episode {i} lost"
        meta = res["observation"]["metadata"]
        assert meta["episode_id"] == obs["metadata"]["episode_id"], f"cross-talk in episode {i}"
        assert res["reward"] == fake_total(obs["prompt"], _action(i % 100)["decision"])
        assert twice in (409, [200, 409]), f"episode {i} rewarded twice"
    assert reward.rows == 200 and reward.calls < 200  # merged into batches
    assert reward.threads == {"arena-judge_0"}  # scored off the event loop


def test_slow_judges_do_not_block_resets():
    """Judges run in the judge thread: while a 2 s judge call is under way, HTTP resets and
    health checks still answer at once (they waited for the whole call before)."""
    with live_server(fake_app(FakeReward(delay_s=2.0))) as hp:

        async def run():
            async with (
                websockets.connect(f"ws://{hp}/ws") as ws,
                httpx.AsyncClient(base_url=f"http://{hp}", timeout=30) as c,
            ):
                await ws.send(json.dumps({"type": "reset", "data": {}}))
                await ws.recv()
                await ws.send(json.dumps({"type": "step", "data": {"decision": "allow"}}))
                await asyncio.sleep(0.3)  # the judge is now busy
                t0 = time.perf_counter()
                r = await c.post("/reset", json={})
                h = await c.get("/health")
                waited = time.perf_counter() - t0
                scored = json.loads(await ws.recv())
                return r.status_code, h.status_code, waited, scored

        reset_code, health_code, waited, scored = asyncio.run(run())
    assert reset_code == health_code == 200 and scored["type"] == "observation"
    assert waited < 1.0, f"reset + health waited {waited:.2f} s behind the judge"
