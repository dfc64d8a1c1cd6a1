"""Scorer client with retries (tenacity) on connection errors, timeouts and 5xx; 4xx fail at
once."""

from __future__ import annotations

import json

import httpx

from safegrpo.judges.serving.models import ScoreResponse


class ScorerError(RuntimeError):
    def __init__(self, status: int | None, message: str):
        super().__init__(f"scorer answered {status}: {message}" if status
                         else f"scorer unreachable: {message}")
        self.status, self.message = status, message


class ScorerClient:
    """``score`` splits a batch into requests within the server's default bounds (at most
    ``max_items`` items, ``max_total_chars`` characters of texts and prompts and
    ``max_request_bytes`` of JSON), so a large batch is not refused with 413/422. A server started
    with smaller bounds shows them at ``GET /health`` (``limits``); pass those here."""

    def __init__(self, url: str = "http://127.0.0.1:8001", api_key: str | None = None,
                 retries: int = 3, backoff_s: float = 0.5, timeout: float = 60.0,
                 http: httpx.Client | None = None, max_request_bytes: int = 1_000_000,
                 max_items: int = 1024, max_total_chars: int = 262_144):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = http or httpx.Client(base_url=url, timeout=timeout)
        self.http.headers.update(headers)
        self.retries, self.backoff_s = retries, backoff_s
        self.max_request_bytes, self.max_items = max_request_bytes, max_items
        self.max_total_chars = max_total_chars

    def health(self) -> dict:
        return self._request("GET", "/health")

    def score(self, texts: list[str], prompts: list[str] | None = None) -> list[float | None]:
        if prompts is not None and len(prompts) != len(texts):
            raise ValueError(f"{len(prompts)} prompts for {len(texts)} texts; give one per text")
        items = [{"text": t} if prompts is None else {"text": t, "prompt": prompts[i]}
                 for i, t in enumerate(texts)]
        out: list[float | None] = []
        for lo, hi in self._chunks(items):
            body = {"items": items[lo:hi]}
            out += ScoreResponse.model_validate(self._request("POST", "/score", json=body)).scores
        return out

    def _chunks(self, items: list[dict]) -> list[tuple[int, int]]:
        """[lo, hi) ranges within the item, character and byte budgets (a lone oversized item
        still gets its own request, for the server to refuse with a clear message)."""
        spans, lo, size, chars = [], 0, 16, 0
        for i, it in enumerate(items):
            n = len(json.dumps(it)) + 2
            c = len(it["text"]) + len(it.get("prompt") or "")
            if i > lo and (size + n > self.max_request_bytes or i - lo >= self.max_items
                           or chars + c > self.max_total_chars):
                spans.append((lo, i))
                lo, size, chars = i, 16, 0
            size, chars = size + n, chars + c
        return spans + [(lo, len(items))] if items else [(0, 0)]

    def _request(self, method: str, path: str, **kw) -> dict:
        """One call, retried by tenacity on connection errors, timeouts and 5xx (exponential
        backoff: backoff_s, 2 * backoff_s, ...); a 4xx or the last failure is raised."""
        from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

        for attempt in Retrying(stop=stop_after_attempt(self.retries + 1), reraise=True,
                                wait=wait_exponential(multiplier=self.backoff_s, min=0),
                                retry=retry_if_exception(_retryable)):
            with attempt:
                return self._once(method, path, **kw)
        raise AssertionError("unreachable: tenacity re-raises the last failure")

    def _once(self, method: str, path: str, **kw) -> dict:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.TransportError as e:
            raise ScorerError(None, str(e) or type(e).__name__) from None
        if r.status_code < 400:
            return r.json()
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text
        if isinstance(detail, list):  # a 422: "items.3.text: String should have at most ..."
            detail = "; ".join(".".join(str(k) for k in d.get("loc", [])[1:]) + f": {d.get('msg')}"
                               for d in detail if isinstance(d, dict))
        raise ScorerError(r.status_code, str(detail))


def _retryable(e: BaseException) -> bool:
    return isinstance(e, ScorerError) and (e.status is None or e.status >= 500)
