"""`safegrpo serve ...`: the moderation arena and the toxicity scorer over HTTP."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from safegrpo.cli_common import ConfigOpt, SetOpt, _offline_env
from safegrpo.core.config import ConfigError, load_config

serve_app = typer.Typer(no_args_is_help=True, help="Serve environments and judges over HTTP.")


@serve_app.command("arena")
def serve_arena(
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: any free port)")] = 8000,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    seed: Annotated[int | None, typer.Option(help="shorthand for --set seed=N")] = None,
) -> None:
    """Serve the moderation arena (OpenEnv HTTP + WebSocket API; settings: ArenaServerConfig)."""
    from safegrpo.envs.moderation.server.config import ArenaServerConfig

    sets = list(overrides or []) + ([f"seed={seed}"] if seed is not None else [])
    try:
        cfg = load_config(ArenaServerConfig, config, sets)
    except ConfigError as e:
        raise typer.BadParameter(str(e), param_hint="--config/--set") from None
    sock = _bind(host, port)  # fail now, not after loading the judges
    _offline_env()
    import uvicorn

    from safegrpo.envs.moderation.server.app import build_default_app
    from safegrpo.envs.moderation.server.transport import uvicorn_config

    app_ = build_default_app(config=cfg)
    uvicorn.Server(uvicorn_config(app_, host, port)).run(sockets=[sock])


def _bind(host: str, port: int):
    import socket

    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except OSError as e:
        raise typer.BadParameter(f"cannot listen on {host}:{port}: {e.strerror or e}",
                                 param_hint="--host/--port") from None
    return sock


SERVED_JUDGES = ("profanity", "embedding_classifier", "projection", "hf_classifier")


def served_judge(judge: str, model: str | None = None, label: str = "toxic"):
    """The judge behind ``serve scorer``; every one scores p(toxic / unsafe) (higher = worse)."""
    if judge == "hf_classifier":
        if not model:
            raise typer.BadParameter("hf_classifier needs --model (hub id or path)",
                                     param_hint="--model")
        from safegrpo.judges import build_judge

        return build_judge(judge, model=model, label=label)
    if judge not in SERVED_JUDGES:
        raise typer.BadParameter(f"unknown judge {judge!r}; valid: {', '.join(SERVED_JUDGES)}",
                                 param_hint="--judge")
    from safegrpo.recipes.redteam.pipeline import ScorerConfig, build_scorer

    # the red-team scorers, fitted on the arena's training pools; projection (p(safe)) is inverted
    return build_scorer(ScorerConfig(judge={"name": judge, "invert": judge == "projection"}))


@serve_app.command("scorer")
def serve_scorer(
    judge: Annotated[str, typer.Option(help="profanity | embedding_classifier | projection | "
                                            "hf_classifier (scores are p(toxic / unsafe))")
                     ] = "profanity",
    model: Annotated[str | None, typer.Option(help="model id/path for hf_classifier")] = None,
    label: Annotated[str, typer.Option(help="label whose probability is the score "
                                            "(hf_classifier)")] = "toxic",
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: any free port)")] = 8001,
    api_key_env: Annotated[str | None,
                           typer.Option(help="name of an env var holding the API key")] = None,
    max_items: Annotated[int, typer.Option(help="most items per request (422 above)")] = 1024,
    max_chars: Annotated[int, typer.Option(help="longest text or prompt (422 above)")] = 20_000,
    max_total_chars: Annotated[int, typer.Option(help="most characters of texts and prompts "
                                                      "per request (422 above)")] = 262_144,
    max_body_bytes: Annotated[int, typer.Option(help="largest request body in bytes (413 above, "
                                                     "refused before it is read)")] = 1_048_576,
    max_batch: Annotated[int, typer.Option(help="most texts per judge call, shared "
                                                "round-robin by the waiting requests")] = 64,
    max_batch_chars: Annotated[int, typer.Option(help="most characters per judge call "
                                                      "(bounds a small request's wait)")] = 16_384,
    timeout_s: Annotated[float, typer.Option(help="per request: 504 past it, and its unscored "
                                                  "texts are dropped")] = 60.0,
) -> None:
    """Serve a judge as POST /score {items: [{text, prompt?}]} -> {scores} (binds 127.0.0.1 by
    default; GET /health shows the limits)."""
    import uvicorn

    from safegrpo.judges.serving.app import ScorerServerConfig, create_scorer_app

    _offline_env()
    key = None
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise typer.BadParameter(f"environment variable {api_key_env} is empty or unset",
                                     param_hint="--api-key-env")
    try:
        cfg = ScorerServerConfig(max_items=max_items, max_chars=max_chars,
                                 max_total_chars=max_total_chars, max_body_bytes=max_body_bytes,
                                 max_batch=max_batch, max_batch_chars=max_batch_chars,
                                 timeout_s=timeout_s, api_key=key)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    sock = _bind(host, port)  # a busy port fails now, not after loading the judge
    j = served_judge(judge, model, label)
    uvicorn.Server(uvicorn.Config(create_scorer_app(j, judge, cfg), host=host, port=port)
                   ).run(sockets=[sock])


@serve_app.command("vllm")
def serve_vllm(
    model: Annotated[str, typer.Argument(help="HF model folder to serve (e.g. runs/x/base)")],
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8001,
    dtype: Annotated[str, typer.Option(help="auto | float32 | bfloat16 | float16")] = "auto",
    max_lora_rank: Annotated[int, typer.Option(min=1, help="largest adapter rank")] = 64,
    max_model_len: Annotated[int, typer.Option(min=0, help="0: the model's own")] = 0,
    python: Annotated[str, typer.Option(help="Python of a venv with vLLM (default: this one)")]
    = "",
) -> None:
    """Serve MODEL with vLLM's OpenAI-compatible server, runtime LoRA loading on: what
    policy.engine {name: vllm, mode: server, url: http://HOST:PORT} talks to."""
    import sys
    from pathlib import Path

    from safegrpo.policies.engines.vllm import INSTALL_HINT
    from safegrpo.policies.engines.vllm_server import server_argv, server_env

    if not (Path(model) / "config.json").exists():
        raise typer.BadParameter(f"{model!r} is not an HF model folder (no config.json); "
                                 "`safegrpo models import SOURCE DIR` makes one",
                                 param_hint="MODEL")
    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise typer.BadParameter(f"{dtype!r} is not auto|float32|bfloat16|float16",
                                 param_hint="--dtype")
    exe = python or sys.executable
    if python and not Path(python).exists():
        raise typer.BadParameter(f"no interpreter at {python!r}", param_hint="--python")
    import subprocess

    if subprocess.run([exe, "-c", "import vllm"], capture_output=True).returncode != 0:
        raise typer.BadParameter(f"vLLM is not importable by {exe}; {INSTALL_HINT}",
                                 param_hint="--python")
    _bind(host, port).close()  # fail now on a busy port, not after loading the model
    argv = server_argv(model, port, host=host, dtype=dtype, max_lora_rank=max_lora_rank,
                       max_model_len=max_model_len, python=exe)
    os.execvpe(argv[0], argv, server_env(kv_cache_gib=1.0))
