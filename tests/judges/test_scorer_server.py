"""Scorer server in-process: TestClient for the API, a uvicorn thread (port 0) for the client."""

import threading
import time

import httpx
import pytest
import torch
import uvicorn
from fastapi.testclient import TestClient

from safegrpo.judges.serving.app import ScorerServerConfig, create_scorer_app
from safegrpo.judges.serving.client import ScorerClient, ScorerError
from safegrpo.judges.toxicity import RemoteJudge
from tests.uvicorn_thread import start_server, stop_server


class LenJudge:
    def __init__(self, delay=0.0):
        self.calls, self.delay = [], delay

    def score(self, batch, prompts=None):
        self.calls.append((list(batch), prompts))
        time.sleep(self.delay)
        return torch.tensor([float("nan") if t == "?" else len(t) / 10 for t in batch])


def test_score_health_bounds_and_key():
    judge = LenJudge()
    app = create_scorer_app(judge, "len",
                            ScorerServerConfig(max_items=3, max_chars=10, api_key="s3cret"))
    with TestClient(app) as tc:
        health = tc.get("/health").json()
        assert health["status"] == "ok" and health["judge"] == "len"
        assert health["limits"]["max_items"] == 3 and health["limits"]["max_chars"] == 10
        ok = tc.post("/score", json={"items": [{"text": "ab", "prompt": "p"},
                                               {"text": "?", "prompt": "q"}]},
                     headers={"X-API-Key": "s3cret"})
        assert ok.json() == {"scores": [pytest.approx(0.2), None], "judge": "len"}
        assert judge.calls[-1][1] == ["p", "q"]
        assert tc.post("/score", json={"items": [{"text": "a"}]}).status_code == 401
        assert tc.post("/score", json={"items": [{"text": "a"}]},
                       headers={"Authorization": "Bearer wrong"}).status_code == 401
        h = {"Authorization": "Bearer s3cret"}
        r = tc.post("/score", json={"items": [{"text": "a"}] * 4}, headers=h)
        assert r.status_code == 422 and "at most 3 items" in r.text and "max_items" in r.text
        r = tc.post("/score", json={"items": [{"text": "x" * 11}]}, headers=h)
        assert r.status_code == 422 and "at most 10 characters" in r.text and "max_chars" in r.text
        r = tc.post("/score", json={"items": [{"text": "a", "prompt": "x" * 11}]}, headers=h)
        assert r.status_code == 422 and "at most 10 characters" in r.text
        assert tc.post("/score", json={"texts": ["a"]}, headers=h).status_code == 422


def test_timeout_is_504():
    app = create_scorer_app(LenJudge(delay=0.5), "slow", ScorerServerConfig(timeout_s=0.05))
    with TestClient(app) as tc:
        r = tc.post("/score", json={"items": [{"text": "a"}]})
        assert r.status_code == 504 and "not scored within timeout_s" in r.json()["detail"]


def test_concurrent_requests_are_micro_batched():
    judge = LenJudge(delay=0.05)
    app = create_scorer_app(judge, "len", ScorerServerConfig(max_wait_ms=50, max_batch=64))
    with TestClient(app) as tc:
        results = {}

        def hit(i):
            body = {"items": [{"text": f"t{i}"}, {"text": f"tt{i}"}]}
            results[i] = tc.post("/score", json=body).json()["scores"]

        threads = [threading.Thread(target=hit, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert all(results[i] == [pytest.approx(len(f"t{i}") / 10), pytest.approx(len(f"tt{i}") / 10)]
               for i in range(6))
    assert len(judge.calls) < 6  # some requests shared a judge call


@pytest.fixture()
def live(request):
    judge = LenJudge()
    server, th, port = start_server(uvicorn.Config(create_scorer_app(judge, "len"),
                                                   host="127.0.0.1", port=0,
                                                   log_level="warning"), wait_s=10)
    yield f"http://127.0.0.1:{port}"
    stop_server(server, th, join_s=5)


def test_client_and_remote_judge_against_live_server(live):
    c = ScorerClient(live)
    assert c.health()["judge"] == "len"
    assert c.score(["abc", "?"]) == [pytest.approx(0.3), None]
    s = RemoteJudge(live).score(["abcd", "?"])
    assert s[0].item() == pytest.approx(0.4) and torch.isnan(s[1])


def test_client_retries_5xx_then_fails_loudly_and_never_retries_4xx():
    calls = {"n": 0}

    def handler(request):
        calls["n"] += 1
        if request.url.path == "/bad":
            return httpx.Response(422, json={"detail": "bad input"})
        if request.url.path == "/invalid":
            return httpx.Response(422, json={"detail": [
                {"loc": ["body", "items", 3, "text"], "msg": "too long", "type": "x"}]})
        return (httpx.Response(503, json={"detail": "overloaded"}) if calls["n"] < 3
                else httpx.Response(200, json={"scores": [1.0], "judge": "x"}))

    c = ScorerClient(http=httpx.Client(transport=httpx.MockTransport(handler), base_url="http://t"),
                     retries=3, backoff_s=0)
    assert c.score(["a"]) == [1.0] and calls["n"] == 3
    calls["n"] = 0
    with pytest.raises(ScorerError, match="422: bad input"):
        c._request("GET", "/bad")
    assert calls["n"] == 1
    with pytest.raises(ScorerError, match=r"422: items\.3\.text: too long$"):
        c._request("GET", "/invalid")
    dead = ScorerClient("http://127.0.0.1:9", retries=1, backoff_s=0, timeout=0.5)
    with pytest.raises(ScorerError, match="unreachable"):
        dead.score(["a"])


@pytest.mark.parametrize("name", ["profanity", "embedding_classifier", "projection"])
def test_served_judges_all_score_unsafe_higher(name):
    """`serve scorer --judge NAME` serves p(toxic / unsafe) for every judge (projection
    inverted)."""
    from safegrpo.cli import served_judge

    scores = served_judge(name).score([
        "a masked man stabbing a stranger, blood everywhere, you idiot",
        "a bowl of fresh fruit on a kitchen table"])
    assert scores.shape == (2,) and scores[0] > scores[1], (name, scores)


def test_client_splits_a_large_batch_under_the_servers_bounds():
    judge = LenJudge()
    cfg = ScorerServerConfig(max_items=5, max_body_bytes=2_000, max_total_chars=700)
    with TestClient(create_scorer_app(judge, "len", cfg)) as tc:
        c = ScorerClient(http=tc, max_request_bytes=2_000, max_items=5, max_total_chars=700,
                         retries=0)
        texts = [f"t{i}" + "x" * (i * 37 % 300) for i in range(23)]
        assert c.score(texts, prompts=[f"p{i}" for i in range(23)]) == [
            pytest.approx(len(t) / 10) for t in texts]
        assert len(judge.calls) >= 5 and [t for call in judge.calls for t in call[0]] == texts
        assert judge.calls[0][1][:2] == ["p0", "p1"]
        assert c.score([]) == []
        with pytest.raises(ScorerError, match="413"):
            c.score(["y" * 5_000])
        with pytest.raises(ValueError, match="2 prompts for 1 texts"):
            c.score(["a"], prompts=["p", "q"])
