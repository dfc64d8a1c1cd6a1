"""`envs/moderation_arena` is an OpenEnv environment folder: `openenv validate <dir>` passes
(openenv.yaml, pyproject with a `server` script, uv.lock, server/app.py with main(), Dockerfile),
and its entry point is `safegrpo serve arena` with the same settings."""

import contextlib
import fnmatch
import importlib.util
import json
import re
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


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the folder's Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ENV_DIR / "server" / "Dockerfile").read_text())
    lines = (ln.strip() for ln in text.splitlines())
    return [(op.upper(), args.strip()) for op, _, args in
            (ln.partition(" ") for ln in lines if ln and not ln.startswith("#"))]


def test_openenv_build_gives_the_dockerfile_a_context_with_what_it_reads(tmp_path, monkeypatch):
    """`openenv build envs/moderation_arena` up to the `docker build` call (no daemon here): the
    Dockerfile it picks is the folder's, and every file the Dockerfile reads is in the context
    it sends (a copy of the folder plus the safegrpo wheel the README has you build first)."""
    import shutil
    import subprocess

    from openenv.cli.__main__ import app as openenv_cli
    from openenv.cli.commands import build as openenv_build

    env = tmp_path / "repo" / "envs" / "moderation_arena"  # same layout: in-repo build mode
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    shutil.copytree(ENV_DIR, env, ignore=shutil.ignore_patterns("wheels", "__pycache__"))
    (env / "wheels").mkdir()
    (env / "wheels" / "safegrpo-0.1.0-py3-none-any.whl").write_bytes(b"")  # stands for it
    seen = {}

    def docker(cmd, cwd=None, check=True):
        context, dockerfile = Path(cmd[-1]), Path(cmd[cmd.index("-f") + 1])
        seen.update(cmd=cmd, dockerfile=dockerfile.relative_to(context),
                    files={str(p.relative_to(context)) for p in context.rglob("*")})
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(openenv_build, "_run_command", docker)
    out = CliRunner().invoke(openenv_cli, ["build", str(env)])
    assert out.exit_code == 0, out.output
    assert seen["cmd"][:4] == ["docker", "build", "-t", "openenv-moderation_arena"]
    assert seen["dockerfile"] == Path("server/Dockerfile")
    steps = _dockerfile()
    copies = [args.split()[:-1] for op, args in steps if op == "COPY"]
    assert copies and all(src == "." or src in seen["files"] for c in copies for src in c)
    run = " ".join(args for op, args in steps if op == "RUN")
    wheels = re.findall(r"wheels/[\w.*-]+\.whl", run)
    assert wheels and all(fnmatch.filter(seen["files"], w) for w in wheels)
    assert "--no-deps ." in run  # installs the folder itself: its `server` script


def test_image_cmd_starts_the_entry_point_that_serves_the_arena(monkeypatch):
    """The Dockerfile's CMD is the folder's `server` script (pyproject) on openenv.yaml's port;
    that entry point, started here in-process with the CMD's arguments (any free port, a fake
    reward), answers /health and opens an episode on /reset."""
    import threading
    import time
    import tomllib

    import httpx
    import uvicorn
    import yaml

    from tests.envs.arena_fakes import fake_app

    steps = dict(_dockerfile())
    cmd = json.loads(steps["CMD"])
    scripts = tomllib.loads((ENV_DIR / "pyproject.toml").read_text())["project"]["scripts"]
    port = yaml.safe_load((ENV_DIR / "openenv.yaml").read_text())["port"]
    assert cmd[0] == "server" and scripts["server"] == "moderation_arena.server.app:main"
    assert cmd[cmd.index("--port") + 1] == str(port) == steps["EXPOSE"]
    servers = []

    class Recorded(uvicorn.Server):
        def __init__(self, config):
            super().__init__(config)
            servers.append(self)

    monkeypatch.setattr(uvicorn, "Server", Recorded)
    monkeypatch.setattr("safegrpo.envs.moderation.server.app.build_default_app",
                        lambda seed=0, config=None: fake_app())
    spec = importlib.util.spec_from_file_location("arena_entry", ENV_DIR / "server" / "app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    args = [*cmd[1:cmd.index("--port") + 1], "0"]

    def serve() -> None:
        with contextlib.suppress(SystemExit):  # the CLI exits 0 when uvicorn stops
            mod.main(args)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    for _ in range(400):
        if servers and servers[0].started:
            break
        time.sleep(0.05)
    assert servers and servers[0].started
    try:
        url = f"http://127.0.0.1:{servers[0].servers[0].sockets[0].getsockname()[1]}"
        assert httpx.get(f"{url}/health").json()["status"] == "healthy"
        obs = httpx.post(f"{url}/reset", json={}).json()["observation"]
        assert obs["prompt"] and obs["metadata"]["session_id"]
    finally:
        servers[0].should_exit = True
        thread.join(timeout=10)
