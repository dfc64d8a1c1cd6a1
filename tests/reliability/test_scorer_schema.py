"""schemathesis against the scorer server's OpenAPI schema: every status it returns is declared,
no server errors, schema-valid requests accepted, schema-invalid ones rejected (issue 15, item 13).

The one rule the schema cannot state (``prompts`` as long as ``texts``, said in the field's
description) is kept for generated requests by ``_same_length`` (a ``map_body`` hook would miss
the coverage phase); its 422 is tested in tests/judges/test_scorer_server.py.
"""

import pytest
import torch
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


def _same_length(case):
    if case.meta is None or case.meta.generation.mode != "positive":
        return  # a schema-violating case stays as generated
    body = case.body
    if (isinstance(body, dict) and isinstance(body.get("prompts"), list)
            and isinstance(body.get("texts"), list)):
        n = len(body["texts"])
        body["prompts"] = (body["prompts"] + [""] * n)[:n]


SMALL = ScorerServerConfig(max_items=8, max_chars=64, max_body_bytes=4096, max_wait_ms=0.0)
OPEN_SCHEMA = _schema(SMALL)
KEYED_SCHEMA = _schema(ScorerServerConfig(max_items=8, max_chars=64, max_body_bytes=4096,
                                                         max_wait_ms=0.0, api_key=KEY))


@OPEN_SCHEMA.parametrize()
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_open_scorer_conforms_to_its_schema(case):
    _same_length(case)
    case.call_and_validate()


@KEYED_SCHEMA.parametrize()
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_keyed_scorer_conforms_to_its_schema(case):
    _same_length(case)
    case.call_and_validate(headers={"X-API-Key": KEY})


def test_keyed_schema_declares_the_auth_and_the_error_statuses():
    op = KEYED_SCHEMA.raw_schema["paths"]["/score"]["post"]
    assert {"401", "413", "422", "500", "504"} <= set(op["responses"])
    assert op.get("security")
    assert "401" not in OPEN_SCHEMA.raw_schema["paths"]["/score"]["post"]["responses"]
