"""schemathesis against the scorer server's OpenAPI schema: every status it returns is declared,
no server errors, schema-valid requests accepted, schema-invalid ones rejected (issue 15, item 13).

A request is a list of ``{text, prompt?}`` items, so no rule lives outside the schema (issue 23:
separate ``texts`` / ``prompts`` lists of different lengths were schema-valid and got 422). The
one bound JSON Schema cannot state, ``max_total_chars`` (in the description and as
``x-max-total-chars``), is set here above what the schema allows (8 x 2 x 64), so every
schema-valid request is accepted; its 422 is tested in test_scorer_fairness.py.
"""

import dataclasses

import pytest
import torch
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

schemathesis = pytest.importorskip("schemathesis")

from safegrpo.judges.serving.app import ScorerServerConfig, create_scorer_app  # noqa: E402

KEY = "s3cret-key"


class LenJudge:
    def score(self, batch, prompts=None):
        return torch.tensor([float("nan") if t == "?" else len(t) / 10 for t in batch])


def _schema(cfg):
    # schemathesis runs the app's lifespan itself, so the micro-batcher is up for /score
    schema = schemathesis.openapi.from_asgi("/openapi.json",
                                            create_scorer_app(LenJudge(), "len", cfg))
    # an oversized schema-violating body is rightly refused with 413 before it is parsed
    schema.config.checks.negative_data_rejection.expected_statuses.append("413")
    return schema


SMALL = ScorerServerConfig(max_items=8, max_chars=64, max_total_chars=8 * 2 * 64,
                           max_body_bytes=4096, max_wait_ms=0.0)
OPEN_SCHEMA = _schema(SMALL)
KEYED_SCHEMA = _schema(dataclasses.replace(SMALL, api_key=KEY))


@OPEN_SCHEMA.parametrize()
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_open_scorer_conforms_to_its_schema(case):
    case.call_and_validate()


@KEYED_SCHEMA.parametrize()
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_keyed_scorer_conforms_to_its_schema(case):
    case.call_and_validate(headers={"X-API-Key": KEY})


def test_keyed_schema_declares_the_auth_and_the_error_statuses():
    op = KEYED_SCHEMA.raw_schema["paths"]["/score"]["post"]
    assert {"401", "413", "422", "500", "504"} <= set(op["responses"])
    assert op.get("security")
    assert "401" not in OPEN_SCHEMA.raw_schema["paths"]["/score"]["post"]["responses"]


def test_422_bodies_are_small_and_name_the_limit():
    """A 422 never echoes the request: at most 10 errors plus a count, each input cut to 120
    characters of JSON (issue 23: the whole input came back)."""
    cfg = ScorerServerConfig(max_items=2000, max_chars=10, max_total_chars=10**6,
                             max_body_bytes=10**6)
    with TestClient(create_scorer_app(LenJudge(), "len", cfg)) as tc:
        r = tc.post("/score", json={"items": [{"text": "x" * 500}] * 1000})  # 1,000 errors
        detail = r.json()["detail"]
        assert r.status_code == 422 and len(r.content) < 4_000, len(r.content)
        assert len(detail) == 11 and detail[-1]["msg"] == "990 more errors not shown"
        assert "max_chars" in detail[0]["msg"] and len(detail[0]["input"]) <= 123
        tight = dataclasses.replace(cfg, max_chars=10**5, max_total_chars=100)
    with TestClient(create_scorer_app(LenJudge(), "len", tight)) as tc:
        r = tc.post("/score", json={"items": [{"text": "y" * 50_000}]})
        assert r.status_code == 422 and len(r.content) < 1_000, len(r.content)
        assert "max_total_chars=100" in r.json()["detail"][0]["msg"]
        # a lone surrogate echoed in an error is escaped, not a 500
        r = tc.post("/score", content=b'{"items": [{"text": "a", "\\ud800": 1}]}',
                    headers={"content-type": "application/json"})
        assert r.status_code == 422 and "\\ud800" in r.text
