"""`envs/moderation_arena` is an OpenEnv environment folder: `openenv validate <dir>` passes
(openenv.yaml, pyproject with a `server` script, uv.lock, server/app.py with main(), Dockerfile),
and its entry point is `safegrpo serve arena` with the same settings."""

import importlib.util
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

ENV_DIR = Path(__file__).resolve().parents[2] / "envs" / "moderation_arena"


def test_openenv_validate_accepts_the_env_folder():
    from openenv.cli.__main__ import app as openenv_cli

    out = CliRunner().invoke(openenv_cli, ["validate", str(ENV_DIR), "--json", "--verbose"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["passed"] and report["issues"] == []
    assert report["deployment_modes"] == {
        "docker": True, "openenv_serve": True, "uv_run": True, "python_module": True
    }


def test_entry_point_is_serve_arena():
    spec = importlib.util.spec_from_file_location("arena_entry", ENV_DIR / "server" / "app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # cheap: the app is built on first access of `app`
    with pytest.raises(AttributeError):
        mod.nothing  # noqa: B018
    with pytest.raises(SystemExit) as e:  # serve arena's own one-line refusal, before any model
        mod.main(["--port", "99999"])
    assert e.value.code == 2
