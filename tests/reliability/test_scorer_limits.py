"""Scorer server under hostile uploads (issue 15, item 13), on a live uvicorn on 127.0.0.1.

Raw sockets stand in for a client that starts a huge upload: the answer must come back while
the body is still unsent, i.e. the server decides from the headers alone.
"""

import socket
import threading
import time

import pytest
import torch
from fastapi.testclient import TestClient

from safegrpo.judges.serving import guard as scorer_guard
from safegrpo.judges.serving.app import ScorerServerConfig, create_scorer_app

KEY = "k3y-for-tests"


class SlowLenJudge:
    def __init__(self, delay=0.0):
        self.calls, self.delay = 0, delay

    def score(self, batch):
        self.calls += 1
        time.sleep(self.delay)
        return torch.tensor([len(t) / 10 for t in batch])


@pytest.fixture()
def live(live_scorer):
    return live_scorer


def raw_post(port, headers, body_prefix=b"", timeout=5.0):
    """Send the request head and the first bytes of a (much longer) body; return the status
    code of the first response line and the seconds it took, without sending the rest."""
    head = "POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head.encode() + body_prefix)
        data = b""
        try:
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            return None, time.perf_counter() - t0
    return int(data.split(b" ")[1]), time.perf_counter() - t0


def legal_20mb_prefix():
    return b'{"items": [{"text": "' + b"x" * 60_000


def test_unauthenticated_25mb_upload_is_refused_before_its_body(live):
    judge = SlowLenJudge()
    port = live(judge, ScorerServerConfig(api_key=KEY))
    status, took = raw_post(port, {"Content-Length": 25_000_000}, legal_20mb_prefix())
    assert status == 401, "the server waited for a body it should never read"
    assert took < 2.0  # was 1.9 s with the whole body sent and parsed; here the body is never sent
    status, _ = raw_post(port, {"Content-Length": 25_000_000, "Expect": "100-continue"})
    assert status == 401  # not "100 Continue": the client is told before it uploads anything
    status, _ = raw_post(port, {"Content-Length": 25_000_000, "X-API-Key": "wrong"}, b"{")
    assert status == 401 and judge.calls == 0


def test_legal_1024_by_20000_request_is_refused_by_its_declared_size(live):
    judge = SlowLenJudge()
    port = live(judge, ScorerServerConfig(api_key=KEY))
    n = 1024 * (20_000 + 14) + 12  # 1,024 texts of 20,000 characters: legal by count and length
    status, took = raw_post(port, {"Content-Length": n, "X-API-Key": KEY}, legal_20mb_prefix())
    assert status == 413 and took < 2.0 and judge.calls == 0  # was 22 s of scoring, blocking all


def test_body_without_a_length_is_cut_off_at_the_bound(live):
    judge = SlowLenJudge()
    port = live(judge, ScorerServerConfig(max_body_bytes=10_000))

    def chunk(b):
        return f"{len(b):x}\r\n".encode() + b + b"\r\n"

    # chunked transfer, no Content-Length to refuse up front: 20 kB sent, the end never sent
    body = chunk(b'{"items": [{"text": "') + b"".join(chunk(b"x" * 1000) for _ in range(20))
    status, _ = raw_post(port, {"Transfer-Encoding": "chunked"}, body)
    assert status == 413 and judge.calls == 0
    with TestClient(create_scorer_app(judge, "len",
                                      ScorerServerConfig(max_body_bytes=10_000))) as tc:
        r = tc.post("/score", content=b'{"items": [{"text": "' + b"x" * 10_000 + b'"}]}',
                    headers={"content-type": "application/json"})
        assert r.status_code == 413 and "10000 bytes" in r.json()["detail"]
        ok = tc.post("/score", json={"items": [{"text": "abc"}]})
        assert ok.status_code == 200 and ok.json()["scores"] == [pytest.approx(0.3)]


def test_other_clients_are_served_while_a_large_request_is_scored(live):
    import httpx

    judge = SlowLenJudge(delay=1.5)  # a slow judge call runs in a worker thread
    # one judge call for the whole request: the loop must stay free while it runs
    port = live(judge, ScorerServerConfig(max_total_chars=10**6, max_batch=1000,
                                          max_batch_chars=10**6))
    url = f"http://127.0.0.1:{port}"
    big = {"items": [{"text": "y" * 1000}] * 1000}  # ~1 MB, under the bound
    out = {}
    th = threading.Thread(target=lambda: out.setdefault(
        "big", httpx.post(f"{url}/score", json=big, timeout=30)))
    th.start()
    for _ in range(100):
        if judge.calls:
            break
        time.sleep(0.02)
    t0 = time.perf_counter()
    assert httpx.get(f"{url}/health", timeout=5).status_code == 200
    assert time.perf_counter() - t0 < 1.0  # the event loop is free while the judge runs
    th.join(timeout=30)
    assert out["big"].status_code == 200 and len(out["big"].json()["scores"]) == 1000


def test_keys_are_compared_in_constant_time_and_a_wrong_one_is_never_excused(monkeypatch):
    seen = []
    real = scorer_guard.hmac.compare_digest

    def spy(a, b):
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(scorer_guard.hmac, "compare_digest", spy)
    ok = scorer_guard.key_ok
    assert ok({"x-api-key": KEY}, KEY) and ok({"authorization": f"Bearer {KEY}"}, KEY)
    assert ok({"x-api-key": KEY, "authorization": f"bearer {KEY}"}, KEY)
    assert not ok({"x-api-key": KEY, "authorization": "Bearer nope"}, KEY)
    assert not ok({"x-api-key": "nope", "authorization": f"Bearer {KEY}"}, KEY)
    assert not ok({"authorization": f"Basic {KEY}"}, KEY) and not ok({}, KEY)
    assert seen and all(b == KEY.encode() for _, b in seen)


def test_non_json_bodies_get_a_clear_4xx():
    with TestClient(create_scorer_app(SlowLenJudge(), "len")) as tc:
        r = tc.post("/score", content=b"7j\xff", headers={"content-type": "text/plain"})
        assert r.status_code == 415 and "application/json" in r.json()["detail"]
        r = tc.post("/score", content=b"7j\xff", headers={"content-type": "application/json"})
        assert r.status_code == 400


def test_config_rejects_nonsense_bounds():
    with pytest.raises(ValueError, match="max_body_bytes"):
        ScorerServerConfig(max_body_bytes=0)
    with pytest.raises(ValueError, match="api_key"):
        ScorerServerConfig(api_key="")


@pytest.mark.parametrize("headers, want", [
    ({}, 401),  # no key
    ({"X-API-Key": KEY, "Content-Length": 2**31}, 413),  # declared size over the bound
])
def test_early_refusal_closes_the_connection_without_reading_the_body(live, headers, want):
    """After a 401/413 decided from the headers the server closes the connection: the rest of a
    2 GiB upload is refused by the socket, not drained (issue 23: 2 GiB were read after a 401)."""
    judge = SlowLenJudge()
    port = live(judge, ScorerServerConfig(api_key=KEY))
    head = "POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in {"Content-Length": 2**31, **headers}.items())
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(head.encode() + b"\r\n" + legal_20mb_prefix())
        reply = b""
        try:
            while chunk := s.recv(65536):  # ends at EOF, or raises on a reset
                reply += chunk
        except ConnectionResetError:
            pass
        except TimeoutError:
            pytest.fail("the connection was kept open for the rest of the body")
        assert reply.startswith(f"HTTP/1.1 {want}".encode()) and b"connection: close" in reply
        sent, mib = 0, b"x" * 2**20
        with pytest.raises(OSError):  # broken pipe / reset: nobody reads the upload any more
            while sent < 64 * 2**20:
                s.sendall(mib)
                sent += len(mib)
    assert judge.calls == 0
