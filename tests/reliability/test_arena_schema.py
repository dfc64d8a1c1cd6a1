"""The arena's OpenAPI schema is the truth: schemathesis (all phases, all default checks, stateful
through the /reset links) finds no failure against a live server, and every status a route can
answer is documented."""

import subprocess
import sys

import pytest

from tests.envs.arena_fakes import fake_app, live_server

pytestmark = pytest.mark.timeout(300)


def test_schemathesis_finds_no_failure(tmp_path):
    with live_server(fake_app()) as hp:
        cmd = [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"http://{hp}/openapi.json",
            "--max-examples",
            "15",
            "--seed",
            "1",
            "--no-color",
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=280, cwd=tmp_path)
    tail = out.stdout[-3000:] + out.stderr[-2000:]
    assert out.returncode == 0, tail
    assert "No issues found" in out.stdout and "Stateful" in out.stdout, tail


def test_every_error_status_is_documented():
    paths = fake_app().openapi()["paths"]
    documented = {p: {m: set(op["responses"]) for m, op in ops.items()} for p, ops in paths.items()}
    assert documented["/reset"]["post"] >= {"200", "400", "404", "413", "422", "429"}
    assert documented["/step"]["post"] >= {
        "200",
        "400",
        "404",
        "409",
        "410",
        "413",
        "422",
        "429",
        "500",
    }
    assert documented["/state"]["get"] >= {"200", "404", "409", "410", "422"}
    assert documented["/mcp"]["post"] >= {"200", "413"}
