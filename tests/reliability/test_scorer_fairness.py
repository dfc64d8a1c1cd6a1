"""Scorer server under load (issue 23, "Scorer server"): the work of one request is bounded in
its schema, a small request is not queued behind a big one, and the texts of a request that
timed out or whose client left are never scored, with a fixed number of judge threads.

Fake judges stand in for slow models: ``PerTextJudge`` sleeps in proportion to its batch,
``GatedJudge`` blocks until the test opens its gate (so what was scored is exact, not timed).
"""

import threading
import time

import httpx
import pytest
import torch
from fastapi.testclient import TestClient

from safegrpo.judges.serving.app import ScorerServerConfig, create_scorer_app
from safegrpo.judges.serving.scheduler import plan_batch


class PerTextJudge:
    def __init__(self, per_text_s):
        self.per_text_s, self.calls = per_text_s, 0

    def score(self, batch):
        self.calls += 1
        time.sleep(self.per_text_s * len(batch))
        return torch.tensor([len(t) / 10 for t in batch])


class GatedJudge:
    def __init__(self):
        self.gate, self.scored, self.entered = threading.Event(), [], threading.Event()

    def score(self, batch):
        self.entered.set()
        self.gate.wait(timeout=30)
        self.scored += list(batch)
        return torch.tensor([1.0] * len(batch))


def items(texts):
    return {"items": [{"text": t} for t in texts]}


def test_round_robin_plan_is_fair_and_keeps_the_budgets():
    # one item per queue per turn: A, B, A, A (B is empty after one); the next call starts at B
    assert plan_batch([[5, 5, 5, 5], [1]], max_items=4, max_chars=100) == ([3, 1], 1)
    # chars: A 10, B 3, A would make 23 > 20 so A closes; B 3, B 3 -> 19; next starts at A
    assert plan_batch([[10, 10], [3, 3, 3]], max_items=10, max_chars=20) == ([1, 3], 0)
    # a single item over the char budget goes alone
    assert plan_batch([[50], [1]], max_items=10, max_chars=20) == ([1, 0], 1)
    assert plan_batch([[], [2]], max_items=10, max_chars=20) == ([0, 1], 0)


def test_total_chars_budget_is_in_the_schema_and_a_422_naming_it():
    judge = PerTextJudge(0.0)
    cfg = ScorerServerConfig(max_items=4, max_chars=10, max_total_chars=25)
    with TestClient(create_scorer_app(judge, "len", cfg)) as tc:
        req = tc.get("/openapi.json").json()["components"]["schemas"]["ScoreRequest"]
        assert req["x-max-total-chars"] == 25 and req["properties"]["items"]["maxItems"] == 4
        assert "at most 25 characters" in req["properties"]["items"]["description"]
        assert tc.get("/health").json()["limits"]["max_total_chars"] == 25
        r = tc.post("/score", json=items(["x" * 10] * 3))  # 30 characters
        assert r.status_code == 422 and "max_total_chars=25" in r.text and judge.calls == 0
        ok = tc.post("/score", json={"items": [{"text": "x" * 10, "prompt": "p" * 5},
                                               {"text": "y" * 10}]})  # exactly 25
        assert ok.status_code == 200 and ok.json()["scores"] == [pytest.approx(1.0)] * 2


def test_serve_scorer_options_reach_the_limits_in_health(monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    import safegrpo.cli_serve as serve
    from safegrpo.cli import app

    built = {}

    class NoServer:
        def __init__(self, config):
            built["app"] = config.app

        def run(self, sockets):
            sockets[0].close()

    monkeypatch.setattr(serve, "served_judge", lambda *a: PerTextJudge(0.0))
    monkeypatch.setattr(uvicorn, "Server", NoServer)
    args = ["serve", "scorer", "--port", "0", "--max-items", "7", "--max-total-chars", "99",
            "--max-batch", "3", "--max-batch-chars", "50", "--timeout-s", "2.5"]
    assert CliRunner().invoke(app, args).exit_code == 0
    with TestClient(built["app"]) as tc:
        limits = tc.get("/health").json()["limits"]
    assert (limits["max_items"], limits["max_total_chars"], limits["max_batch"],
            limits["max_batch_chars"], limits["timeout_s"]) == (7, 99, 3, 50, 2.5)
    for opt, field in [("--max-total-chars", "max_total_chars"), ("--timeout-s", "timeout_s")]:
        bad = "nan" if opt == "--timeout-s" else "0"
        r = CliRunner().invoke(app, ["serve", "scorer", "--port", "0", opt, bad])
        assert r.exit_code == 2 and field in r.output and "Traceback" not in r.output


def test_a_small_request_is_not_queued_behind_a_big_one(live_scorer):
    judge = PerTextJudge(0.01)  # 8 texts per call: 0.08 s a call, 1.6 s for the big request
    port = live_scorer(judge, ScorerServerConfig(max_batch=8, max_wait_ms=0))
    url = f"http://127.0.0.1:{port}/score"
    big_texts = ["b" * (i % 50 + 1) for i in range(160)]
    out = {}

    def big():
        t0 = time.perf_counter()
        out["big"] = httpx.post(url, json=items(big_texts), timeout=60)
        out["big_s"] = time.perf_counter() - t0

    th = threading.Thread(target=big)
    th.start()
    while judge.calls < 2:
        time.sleep(0.005)
    t0 = time.perf_counter()
    small = httpx.post(url, json=items(["hello"]), timeout=60)
    small_s = time.perf_counter() - t0
    th.join(timeout=60)
    assert small.status_code == 200 and small.json()["scores"] == [pytest.approx(0.5)]
    assert out["big"].json()["scores"] == [pytest.approx(len(t) / 10) for t in big_texts]
    # the small one waits for the call in progress and shares the next one (2 of 20 calls);
    # queued behind the big request it waited ~90% of the big request's time
    assert small_s < 0.25 * out["big_s"], (small_s, out["big_s"])


def test_texts_of_a_timed_out_request_are_never_scored():
    judge = GatedJudge()
    cfg = ScorerServerConfig(max_batch=4, max_wait_ms=0, timeout_s=0.3)
    with TestClient(create_scorer_app(judge, "len", cfg)) as tc:
        r = tc.post("/score", json=items([f"t{i}" for i in range(40)]))
        assert r.status_code == 504 and "dropped" in r.json()["detail"]
        load = tc.get("/health").json()["load"]
        judge.gate.set()  # the call in progress (4 texts) finishes; nothing else may run
        time.sleep(0.5)
        assert judge.scored == ["t0", "t1", "t2", "t3"]
        assert load["dropped_texts"] == 36 and load["queued_texts"] == 0


def test_texts_of_a_disconnected_client_are_never_scored(live_scorer):
    judge = GatedJudge()
    port = live_scorer(judge, ScorerServerConfig(max_batch=4, max_wait_ms=0, timeout_s=60))
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes its connection
        httpx.post(f"{url}/score", json=items([f"t{i}" for i in range(40)]), timeout=0.5)
    for _ in range(100):
        load = httpx.get(f"{url}/health", timeout=5).json()["load"]
        if load["dropped_texts"]:
            break
        time.sleep(0.05)
    judge.gate.set()
    time.sleep(0.5)
    assert load == {"active_requests": 0, "queued_texts": 0, "scored_texts": 0,
                    "dropped_texts": 36}
    assert judge.scored == ["t0", "t1", "t2", "t3"]


def test_thread_count_stays_bounded_under_timed_out_requests(live_scorer):
    judge = GatedJudge()  # every judge call hangs until the end of the test
    port = live_scorer(judge, ScorerServerConfig(max_batch=2, max_wait_ms=0, timeout_s=0.1))
    url = f"http://127.0.0.1:{port}/score"
    before = threading.active_count()
    statuses = [httpx.post(url, json=items([f"r{i}", "x", "y"]), timeout=10).status_code
                for i in range(10)]
    after = threading.active_count()
    judge.gate.set()
    assert statuses == [504] * 10
    assert after - before <= 1, (before, after)  # the one judge thread; was one per timeout
