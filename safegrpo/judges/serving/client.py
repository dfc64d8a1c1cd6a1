"""Scorer client with retries on connection errors, timeouts and 5xx; 4xx fail at once."""

from __future__ import annotations

import time

import httpx

from safegrpo.judges.serving.models import ScoreResponse


class ScorerError(RuntimeError):
    def __init__(self, status: int | None, message: str):
        super().__init__(f"scorer answered {status}: {message}" if status else f"scorer unreachable: {message}")
        self.status, self.message = status, message


class ScorerClient:
    def __init__(self, url: str = "http://127.0.0.1:8001", api_key: str | None = None, retries: int = 3,
                 backoff_s: float = 0.5, timeout: float = 60.0, http: httpx.Client | None = None):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = http or httpx.Client(base_url=url, timeout=timeout)
        self.http.headers.update(headers)
        self.retries, self.backoff_s = retries, backoff_s

    def health(self) -> dict:
        return self._request("GET", "/health")

    def score(self, texts: list[str], prompts: list[str] | None = None) -> list[float | None]:
        body = {"texts": texts} if prompts is None else {"texts": texts, "prompts": prompts}
        return ScoreResponse.model_validate(self._request("POST", "/score", json=body)).scores

    def _request(self, method: str, path: str, **kw) -> dict:
        last: ScorerError | None = None
        for attempt in range(self.retries + 1):
            try:
                r = self.http.request(method, path, **kw)
            except httpx.TransportError as e:
                last = ScorerError(None, str(e) or type(e).__name__)
            else:
                if r.status_code < 400:
                    return r.json()
                try:
                    detail = r.json().get("detail", r.text)
                except ValueError:
                    detail = r.text
                last = ScorerError(r.status_code, str(detail))
                if r.status_code < 500:
                    raise last
            if attempt < self.retries:
                time.sleep(self.backoff_s * 2**attempt)
        assert last is not None
        raise last
