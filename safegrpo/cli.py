"""`safegrpo` command line.

    safegrpo demo                       # moderation arena demo on CPU (embedded defaults)
    safegrpo train moderation -c configs/moderation_gpu.yaml --set grpo.steps=50 [--resume]
    safegrpo serve arena --port 8000    # OpenEnv-compatible arena server
    safegrpo config moderation          # print the full default config as YAML
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
import yaml

from safegrpo.core.config import ConfigError, load_config, to_dict

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Safety post-training with GRPO.")
train_app = typer.Typer(no_args_is_help=True, help="Run a recipe's training stages.")
serve_app = typer.Typer(no_args_is_help=True, help="Serve environments and judges over HTTP.")
app.add_typer(train_app, name="train")
app.add_typer(serve_app, name="serve")

RECIPES = ("moderation",)
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML preset", exists=True, dir_okay=False)]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="override, e.g. grpo.steps=50")]


def _offline_env() -> None:
    """Quiet third-party progress bars and deprecation chatter; keep our own output readable."""
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _load(recipe: str, config: Path | None, overrides: list[str] | None, out_dir: str | None = None):
    if recipe not in RECIPES:
        raise typer.BadParameter(f"unknown recipe {recipe!r}; valid: {', '.join(RECIPES)}", param_hint="RECIPE")
    from safegrpo.recipes.moderation import ModerationRecipeConfig

    sets = list(overrides or [])
    if out_dir:
        sets.append(f"out_dir={out_dir}")
    try:
        return load_config(ModerationRecipeConfig, config, sets)
    except ConfigError as e:
        raise typer.BadParameter(str(e), param_hint="--config/--set") from None


def _default_demo_config() -> Path | None:
    p = Path(__file__).resolve().parents[1] / "configs" / "moderation_demo.yaml"
    return p if p.exists() else None


@app.command()
def demo(
    recipe: Annotated[str, typer.Argument(help="recipe to demo")] = "moderation",
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    out_dir: Annotated[str | None, typer.Option(help="output folder")] = None,
    resume: Annotated[bool, typer.Option(help="continue GRPO from the latest checkpoint")] = False,
) -> None:
    """Run a recipe end to end on embedded defaults and print the per-tier results table."""
    _offline_env()
    if config is None and recipe == "moderation":
        config = _default_demo_config()
    cfg = _load(recipe, config, overrides, out_dir)
    from rich.console import Console
    from rich.table import Table

    from safegrpo.recipes.moderation_demo import run_demo

    console = Console(width=max(Console().width, 150))
    summary = run_demo(cfg, resume=resume, log=console.print)
    table = Table(title="Held-out evaluation (per tier)")
    cols = ["method", "tier", "allow_rate", "transform_rate", "reject_rate", "parse_rate", "mean_reward",
            "unsafe_pass_through", "benign_over_refusal"]
    for c in cols:
        table.add_column(c)
    for row in summary["table"]:
        table.add_row(*[("-" if row[c] is None else f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]))
                        for c in cols])
    console.print(table)
    console.print(f"wall time {summary['wall_time_s']:.0f}s; results in {cfg.out_dir}/ "
                  "(eval_table.md, eval_records.jsonl, reward_curve.png, grpo/metrics.jsonl)")


@train_app.command("moderation")
def train_moderation(config: ConfigOpt = None, overrides: SetOpt = None,
                     resume: Annotated[bool, typer.Option(help="continue GRPO from the latest checkpoint")] = False,
                     skip_sft: Annotated[bool, typer.Option(help="GRPO straight from base_model")] = False) -> None:
    """SFT warm start then GRPO against the arena (no baselines / eval)."""
    _offline_env()
    cfg = _load("moderation", config, overrides)
    from safegrpo.recipes.moderation import (
        build_reward,
        prepare_base,
        run_grpo,
        run_sft,
        save_run_config,
    )

    save_run_config(cfg)
    base = prepare_base(cfg)
    model, adapter = (base, None) if skip_sft else run_sft(cfg, base, resume=resume)[:2]
    _, trainer = run_grpo(cfg, model, adapter, build_reward(cfg), resume=resume)
    typer.echo(json.dumps({"steps": len(trainer.history), "stop_reason": trainer.stop_reason,
                           "final_reward": trainer.history[-1]["reward/total"] if trainer.history else None}))


@serve_app.command("arena")
def serve_arena(host: str = "127.0.0.1", port: int = 8000, seed: int = 0) -> None:
    """Serve the moderation arena (OpenEnv HTTP + WebSocket API)."""
    import uvicorn

    from safegrpo.envs.moderation.server.app import build_default_app

    uvicorn.run(build_default_app(seed=seed), host=host, port=port)


@serve_app.command("scorer")
def serve_scorer(
    judge: Annotated[str, typer.Option(help="profanity | hf_classifier | projection")] = "profanity",
    model: Annotated[str | None, typer.Option(help="model id/path for hf_classifier")] = None,
    label: Annotated[str, typer.Option(help="label whose probability is the score (hf_classifier)")] = "toxic",
    host: str = "127.0.0.1",
    port: int = 8001,
    api_key_env: Annotated[str | None, typer.Option(help="name of an env var holding the API key")] = None,
    max_items: int = 1024,
    timeout_s: float = 60.0,
) -> None:
    """Serve a judge as POST /score {texts, prompts?} -> {scores} (binds 127.0.0.1 by default)."""
    import uvicorn

    from safegrpo.judges import build_judge
    from safegrpo.judges.serving.app import ScorerServerConfig, create_scorer_app

    _offline_env()
    key = None
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise typer.BadParameter(f"environment variable {api_key_env} is empty or unset", param_hint="--api-key-env")
    kwargs = {"model": model, "label": label} if judge == "hf_classifier" else {}
    if judge == "hf_classifier" and not model:
        raise typer.BadParameter("hf_classifier needs --model (hub id or path)", param_hint="--model")
    try:
        j = build_judge(judge, **kwargs)
    except KeyError as e:
        raise typer.BadParameter(str(e.args[0]), param_hint="--judge") from None
    cfg = ScorerServerConfig(max_items=max_items, timeout_s=timeout_s, api_key=key)
    uvicorn.run(create_scorer_app(j, judge, cfg), host=host, port=port)


@app.command("config")
def show_config(recipe: Annotated[str, typer.Argument()] = "moderation", config: ConfigOpt = None,
                overrides: SetOpt = None) -> None:
    """Print a recipe's resolved config (defaults <- preset <- overrides) as YAML."""
    typer.echo(yaml.safe_dump(to_dict(_load(recipe, config, overrides)), sort_keys=False))


if __name__ == "__main__":
    app()
