"""Hostile input to the arena server: bad WS frames keep the session, deep JSON never gives a
500, a step that breaks the judge fails alone, and the real reward scores concurrent sessions off
the event loop exactly as it scores them one by one."""

import asyncio
import json

import httpx
import pytest
import websockets
from websockets.sync.client import connect

from safegrpo.envs.moderation.reward import PromptInfo
from safegrpo.envs.moderation.server.app import create_app
from safegrpo.envs.moderation.server.config import ArenaServerConfig
from safegrpo.envs.moderation.server.environment import ModerationEnvironment
from tests.envs.arena_fakes import POOL, FakeReward, fake_app, fake_total, live_server

pytestmark = pytest.mark.timeout(180)
DEEP = "[" * 3000 + "]" * 3000  # 6 kB, far under every size limit
DEEP_OBJECT = '{"a":' * 3000 + "1" + "}" * 3000  # 18 kB of valid JSON, 3,000 deep


def _send(ws, frame) -> dict:
    ws.send(frame)
    return json.loads(ws.recv(timeout=30))


def test_bad_ws_frames_get_error_frames_and_the_session_survives():
    with live_server(fake_app(max_body_bytes=8192)) as hp, connect(f"ws://{hp}/ws") as ws:
        reset = _send(ws, json.dumps({"type": "reset", "data": {"prompt_id": "p00000"}}))
        prompt = reset["data"]["observation"]["prompt"]
        bad = {
            "{not json": "INVALID_JSON",
            b"\x00\x01binary": "INVALID_JSON",
            "[1, 2]": "VALIDATION_ERROR",
            "null": "VALIDATION_ERROR",
            DEEP: "INVALID_JSON",
            '{"type": "jump"}': "UNKNOWN_TYPE",
            '{"type": "step", "data": [1]}': "VALIDATION_ERROR",
            '{"type": "step", "data": {}, "extra": 1}': "VALIDATION_ERROR",
            '{"type": "step", "data": {"decision": "maybe"}}': "VALIDATION_ERROR",
            json.dumps({"type": "step", "data": {"completion": "x" * 9000}}): "VALIDATION_ERROR",
        }
        for frame, code in bad.items():
            reply = _send(ws, frame)
            assert reply["type"] == "error" and reply["data"]["code"] == code, (
                str(frame)[:40],
                reply,
            )
            assert reply["data"]["message"] and 400 <= reply["data"]["status"] < 500
        res = _send(ws, json.dumps({"type": "step", "data": {"decision": "reject"}}))
        assert res["type"] == "observation" and res["data"]["reward"] == fake_total(
            prompt, "reject"
        )
        assert _send(ws, '{"type": "state"}')["data"]["done"] is True


@pytest.fixture(scope="module")
def real_app(arena_reward):
    return create_app(
        lambda: ModerationEnvironment(arena_reward, POOL, seed=0), ArenaServerConfig()
    )


def test_deep_json_raw_text_action_is_4xx_or_scored_never_500(real_app):
    completion = DEEP_OBJECT  # as raw text, under the 20,000-character limit
    with live_server(real_app) as hp:
        with httpx.Client(base_url=f"http://{hp}", timeout=60) as c:
            sid = c.post("/reset", json={}).json()["observation"]["metadata"]["session_id"]
            r = c.post("/step", json={"session_id": sid, "action": {"completion": completion}})
            assert r.status_code == 200 or 400 <= r.status_code < 500, r.text
            if r.status_code == 200:
                assert r.json()["observation"]["metadata"]["parse_error"]
            else:  # refused: the episode is still open
                ok = c.post("/step", json={"session_id": sid, "action": {"decision": "allow"}})
                assert ok.status_code == 200
            body = '{"session_id": "%s", "action": %s}' % (sid, DEEP)
            r = c.post("/step", content=body, headers={"content-type": "application/json"})
            assert r.status_code == 400
            nested = json.loads("[" * 900 + "]" * 900)  # parses, fails validation: no input echo
            r = c.post(
                "/step",
                json={"session_id": sid, "action": {"decision": "allow", "metadata": nested}},
            )
            assert r.status_code == 422
        with connect(f"ws://{hp}/ws") as ws:
            _send(ws, json.dumps({"type": "reset", "data": {}}))
            reply = _send(ws, json.dumps({"type": "step", "data": {"completion": completion}}))
            assert reply["type"] == "observation" or 400 <= reply["data"]["status"] < 500
            assert _send(ws, '{"type": "state"}')["type"] == "state"  # the session is kept


class BreaksOnBoom(FakeReward):
    """Raises for a whole batch when any completion holds BOOM (like a judge's parser would)."""

    def __call__(self, infos, completions, group_ids=None):
        if any("BOOM" in c for c in completions):
            raise RecursionError("maximum recursion depth exceeded")
        return super().__call__(infos, completions, group_ids)


def test_a_step_that_breaks_the_judge_fails_alone():
    reward = BreaksOnBoom(delay_s=0.2)
    with live_server(fake_app(reward)) as hp:

        async def episode(i: int):
            async with websockets.connect(f"ws://{hp}/ws") as ws:
                await ws.send(json.dumps({"type": "reset", "data": {}}))
                prompt = json.loads(await ws.recv())["data"]["observation"]["prompt"]
                action = {"completion": "BOOM"} if i == 0 else {"decision": "allow"}
                await ws.send(json.dumps({"type": "step", "data": action}))
                return prompt, json.loads(await ws.recv())

        async def run():
            return await asyncio.gather(*[episode(i) for i in range(12)])

        out = asyncio.run(run())
    (_, boom), rest = out[0], out[1:]
    assert boom["type"] == "error" and boom["data"]["status"] == 422
    assert "could not be scored" in boom["data"]["message"]
    for prompt, res in rest:
        assert res["type"] == "observation" and res["data"]["reward"] == fake_total(prompt, "allow")


def test_real_reward_concurrent_sessions_match_one_by_one_scoring(real_app, arena_reward):
    """40 WS + HTTP sessions at once with the default reward (MiniLM judges, merged into batches
    in the judge thread): every reward equals scoring that episode alone in-process."""
    actions = [
        {"decision": "transform", "rewrite": "a calm street scene at dusk", "reason": "v"},
        {"decision": "reject", "reason": "unsafe"},
        {"decision": "allow"},
        {"completion": '{"decision": "transform", "rewrite": "two friends talking"}'},
    ]
    before = real_app.state.arena.batcher.calls
    with live_server(real_app) as hp:

        async def ws_episode(i: int):
            async with websockets.connect(f"ws://{hp}/ws") as ws:
                await ws.send(json.dumps({"type": "reset", "data": {"seed": i}}))
                await ws.recv()
                await ws.send(json.dumps({"type": "step", "data": actions[i % 4]}))
                return json.loads(await ws.recv())["data"]

        async def http_episode(c, i: int):
            sid = (await c.post("/reset", json={"seed": i})).json()["observation"]["metadata"][
                "session_id"
            ]
            r = await c.post("/step", json={"session_id": sid, "action": actions[i % 4]})
            return r.json()

        async def run():
            async with httpx.AsyncClient(base_url=f"http://{hp}", timeout=120) as c:
                return await asyncio.gather(
                    *[ws_episode(i) for i in range(20)], *[http_episode(c, i) for i in range(20)]
                )

        out = asyncio.run(run())
    batched_calls = real_app.state.arena.batcher.calls - before
    for k, res in enumerate(out):
        meta, act = res["observation"]["metadata"], actions[k % 20 % 4]
        rec = POOL.by_id[meta["prompt_id"]]
        text = act.get("completion") or json.dumps(act)
        alone = arena_reward([PromptInfo.of(rec)], [text])
        assert res["reward"] == pytest.approx(float(alone.total[0]), abs=1e-5), k
    assert batched_calls < 40
