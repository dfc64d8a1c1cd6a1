"""`safegrpo` command line.

    safegrpo demo                       # moderation arena demo on CPU (embedded defaults)
    safegrpo demo --seeds 3             # 3 seeds, table of mean ± 95 % bootstrap interval
    safegrpo demo diffusion             # safe-diffusion GRPO demo on CPU (embedded shapes world)
    safegrpo demo redteam               # red-team attacker GRPO vs a tiny target
    safegrpo demo selfplay              # attacker-defender self-play in the arena
    safegrpo demo recommender           # Safe SFT + per-rank GRPO arms on a synthetic catalog
    safegrpo train redteam -c my.yaml   # attacker GRPO only (checkpoints, resume, export)
    safegrpo infer --checkpoint runs/redteam/grpo/checkpoints/step_000060 --prompt "Topic: hate"
    safegrpo export runs/redteam/grpo/checkpoints/step_000060 exported/  # merged HF / diffusers
    safegrpo train moderation -c configs/moderation_gpu.yaml --set grpo.steps=50 [--resume]
    safegrpo serve arena --port 8000    # OpenEnv-compatible arena server
    safegrpo config moderation          # print the full default config as YAML
    safegrpo config redteam --explain   # every field: dotted name, type, value, docstring
    safegrpo --install-completion       # shell completion (commands, options, recipe names)
    safegrpo judges report              # text-judge AUROC / accuracy on the hand-written eval split
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
import yaml

from safegrpo.cli_common import (  # noqa: F401 (re-exported)
    ConfigOpt,
    SetOpt,
    _offline_env,
    explain_text,
    set_option,
)
from safegrpo.cli_export import export_cmd
from safegrpo.cli_judges import judges_app
from safegrpo.cli_models import models_app
from safegrpo.cli_serve import serve_app, served_judge  # noqa: F401 (re-exported)
from safegrpo.core.config import ConfigError, load_config, missing_paths, to_dict

app = typer.Typer(add_completion=True, no_args_is_help=True, help="Safety post-training with GRPO.")
train_app = typer.Typer(no_args_is_help=True, help="Run a recipe's training stages.")
app.add_typer(train_app, name="train")
app.add_typer(serve_app, name="serve")
app.add_typer(models_app, name="models")
app.add_typer(judges_app, name="judges")
app.command("export")(export_cmd)

# recipe -> (config class, demo preset under configs/, demo module with run_demo + render_summary)
RECIPES = {
    "moderation": ("safegrpo.recipes.moderation:ModerationRecipeConfig", "moderation_demo.yaml",
                   "safegrpo.recipes.moderation_demo"),
    "diffusion": ("safegrpo.recipes.diffusion:DiffusionRecipeConfig", "diffusion_demo.yaml",
                  "safegrpo.recipes.diffusion_demo"),
    "redteam": ("safegrpo.recipes.redteam:RedTeamRecipeConfig", "redteam_demo.yaml", "safegrpo.recipes.redteam_demo"),
    "selfplay": ("safegrpo.recipes.selfplay_demo:SelfPlayRecipeConfig", "selfplay_demo.yaml",
                 "safegrpo.recipes.selfplay_demo"),
    "recommender": ("safegrpo.recipes.recommender:RecommenderRecipeConfig", "recommender_demo.yaml",
                    "safegrpo.recipes.recommender_demo"),
}
# --set examples of the per-recipe commands (each valid for its recipe: tests/test_cli_config.py)
GRPOSetOpt = set_option("grpo.steps=50")
RedTeamSetOpt = set_option("training.steps=60")


def _complete_recipe(incomplete: str) -> list[str]:
    return [r for r in RECIPES if r.startswith(incomplete)]


RecipeArg = Annotated[str, typer.Argument(help="recipe: " + " | ".join(RECIPES),
                                          autocompletion=_complete_recipe)]


def _fail_cleanly(fn):
    """A checkpoint that cannot be resumed is one line on stderr and exit code 1, not a traceback."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from safegrpo.training.checkpoint import CheckpointError

        try:
            return fn(*args, **kwargs)
        except CheckpointError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
    return wrapper


def _load(recipe: str, config: Path | None, overrides: list[str] | None, out_dir: str | None = None,
          check_paths: bool = True):
    if recipe not in RECIPES:
        raise typer.BadParameter(f"unknown recipe {recipe!r}; valid: {', '.join(RECIPES)}", param_hint="RECIPE")
    import importlib

    mod, _, cls = RECIPES[recipe][0].partition(":")
    config_cls = getattr(importlib.import_module(mod), cls)
    sets = list(overrides or [])
    if out_dir:
        sets.append(f"out_dir={out_dir}")
    try:
        cfg = load_config(config_cls, config, sets)
    except ConfigError as e:
        raise typer.BadParameter(str(e), param_hint="--config/--set") from None
    missing = missing_paths(cfg) if check_paths else []
    if missing:
        raise typer.BadParameter("; ".join(missing), param_hint="--config/--set")
    return cfg


def _default_demo_config(recipe: str) -> Path | None:
    if recipe not in RECIPES:
        return None
    # safegrpo/configs is a link to the repo's configs/ and ships in the wheel as package data
    p = Path(__file__).resolve().parent / "configs" / RECIPES[recipe][1]
    return p if p.exists() else None


@app.command()
@_fail_cleanly
def demo(
    recipe: RecipeArg = "moderation",
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    out_dir: Annotated[str | None, typer.Option(help="output folder")] = None,
    resume: Annotated[bool, typer.Option(help="continue GRPO from the latest checkpoint")] = False,
    seeds: Annotated[int, typer.Option(min=1, help="run seeds seed..seed+N-1 into "
                                       "out_dir/seed_<s>; print mean ± 95% interval")] = 1,
) -> None:
    """Run a recipe end to end on embedded defaults and print its evaluation table."""
    _offline_env()
    if config is None:
        config = _default_demo_config(recipe)
    cfg = _load(recipe, config, overrides, out_dir)
    import importlib

    from rich.console import Console

    demo_mod = importlib.import_module(RECIPES[recipe][2])
    console = Console(width=max(Console().width, 150))
    if seeds > 1:
        from safegrpo.cli_seeds import run_seeds

        cfgs = [_load(recipe, config, [*(overrides or []), f"seed={cfg.seed + k}"],
                      str(Path(cfg.out_dir) / f"seed_{cfg.seed + k}")) for k in range(seeds)]
        run_seeds(demo_mod, cfgs, cfg.out_dir, resume, console)
        console.print(f"results in {cfg.out_dir}/ (seeds_table.md, seeds_table.json, seed_*/)")
        return
    summary = demo_mod.run_demo(cfg, resume=resume, log=console.print)
    console.print(demo_mod.render_summary(summary))
    console.print(f"wall time {summary['wall_time_s']:.0f}s; results in {cfg.out_dir}/ ({demo_mod.OUTPUTS})")


@train_app.command("moderation")
@_fail_cleanly
def train_moderation(config: ConfigOpt = None, overrides: GRPOSetOpt = None,
                     resume: Annotated[bool, typer.Option(help="continue GRPO from the latest checkpoint")] = False,
                     skip_sft: Annotated[bool, typer.Option(help="GRPO straight from base_model")] = False) -> None:
    """SFT warm start, GRPO against the arena, then evaluation on every eval split."""
    _offline_env()
    cfg = _load("moderation", config, overrides)
    from safegrpo.recipes.moderation import (
        build_reward,
        load_defender,
        prepare_base,
        run_grpo,
        run_sft,
        save_run_config,
    )
    from safegrpo.recipes.moderation_demo import evaluate_trained

    save_run_config(cfg)
    policy = load_defender(cfg, prepare_base(cfg))
    if not skip_sft:
        run_sft(cfg, policy, resume=resume)
    reward = build_reward(cfg)
    trainer = run_grpo(cfg, policy, reward, resume=resume)
    table = evaluate_trained(cfg, policy, reward)
    headline = {f"{r['split']}/{r['method']}": {k: r[k] for k in ("parse_rate", "unsafe_pass_through",
                                                                   "benign_over_refusal")}
                for r in table if r["tier"] == "all"}
    typer.echo(json.dumps({"steps": len(trainer.history), "stop_reason": trainer.stop_reason,
                           "final_reward": trainer.history[-1]["reward/total"] if trainer.history else None,
                           "eval": headline}))


@train_app.command("diffusion")
@_fail_cleanly
def train_diffusion(config: ConfigOpt = None, overrides: GRPOSetOpt = None,
                    resume: Annotated[bool, typer.Option(help="continue GRPO from the latest checkpoint")] = False
                    ) -> None:
    """GRPO of a diffusion policy with the steering reward (no before/after eval)."""
    _offline_env()
    cfg = _load("diffusion", config, overrides)
    from safegrpo.judges.clip import CLIPEmbedder
    from safegrpo.recipes.diffusion import (
        build_steering_reward,
        load_prompts,
        prepare_world,
        run_grpo,
        save_run_config,
        split_prompts,
    )

    save_run_config(cfg)
    pipe, clip = prepare_world(cfg)
    train, _ = split_prompts(load_prompts(cfg.prompts), cfg.prompts.holdout_every)
    _, trainer = run_grpo(cfg, pipe, build_steering_reward(cfg.reward, CLIPEmbedder(clip)), train, resume=resume)
    typer.echo(json.dumps({"steps": len(trainer.history), "stop_reason": trainer.stop_reason,
                           "final_reward": trainer.history[-1]["reward/total"] if trainer.history else None}))


@train_app.command("recommender")
@_fail_cleanly
def train_recommender(config: ConfigOpt = None, overrides: GRPOSetOpt = None,
                      resume: Annotated[bool, typer.Option(help="continue GRPO from the latest checkpoint")] = False
                      ) -> None:
    """Safe SFT then per-rank GRPO as configured; validation metrics at every checkpoint."""
    _offline_env()
    cfg = _load("recommender", config, overrides)
    from safegrpo.recipes.recommender import train

    try:
        result = train(cfg, resume=resume)
    except (ValueError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e), param_hint="--config/--set (data.*)") from None
    typer.echo(json.dumps(result))


@train_app.command("redteam")
@_fail_cleanly
def train_redteam(config: ConfigOpt = None, overrides: RedTeamSetOpt = None,
                  resume: Annotated[bool, typer.Option(help="continue GRPO from the latest checkpoint")] = False
                  ) -> None:
    """Attacker GRPO against the configured target; exports grpo/adversarial.jsonl."""
    _offline_env()
    cfg = _load("redteam", config, overrides)
    from safegrpo.recipes.redteam import build_scorer, prepare_models, run_attack, save_run_config
    from safegrpo.recipes.redteam_demo import build_target

    save_run_config(cfg)
    try:
        attacker, target_model = prepare_models(cfg)
        judge = build_scorer(cfg.reward)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--config/--set") from None
    _, trainer, top = run_attack(cfg, attacker, build_target(cfg, target_model), judge, resume=resume)
    typer.echo(json.dumps({"steps": len(trainer.history), "stop_reason": trainer.stop_reason,
                           "exported": len(top), "best_toxicity": top[0]["toxicity"] if top else None}))


@app.command()
def infer(
    checkpoint: Annotated[Path, typer.Option(help="checkpoint folder (…/checkpoints/step_N) or a saved model")],
    prompt: Annotated[list[str], typer.Option(help="prompt text (repeatable)")],
    samples: Annotated[int, typer.Option(help="completions per prompt")] = 1,
    max_new_tokens: int = 48,
    temperature: float = 1.0,
    greedy: Annotated[bool, typer.Option(help="greedy decoding (ignores samples/temperature)")] = False,
    seed: int = 0,
) -> None:
    """Generate from a trained LM policy (full model or LoRA adapter over its base)."""
    _offline_env()
    from safegrpo.policies.inference import load_for_inference

    try:
        policy = load_for_inference(checkpoint, max_new_tokens=max_new_tokens, temperature=temperature)
    except (FileNotFoundError, ValueError) as e:
        raise typer.BadParameter(str(e), param_hint="--checkpoint") from None
    template = policy.cfg.prompt.template  # the role's recorded user template ({prompt} if none)
    for p in prompt:
        text = template.format(prompt=p)
        outs = [policy.complete([text], greedy=greedy, seed=seed + k)[0]
                for k in range(1 if greedy else samples)]
        typer.echo(json.dumps({"prompt": p, "completions": outs}))


@app.command("config")
def show_config(recipe: RecipeArg = "moderation", config: ConfigOpt = None,
                overrides: SetOpt = None,
                explain: Annotated[bool, typer.Option(
                    "--explain", help="list every field: dotted name, type, value, docstring")] = False
                ) -> None:
    """Print a recipe's resolved config (defaults <- preset <- overrides) as YAML, or with
    --explain every field with its type, value (and default) and documentation."""
    cfg = _load(recipe, config, overrides, check_paths=False)
    typer.echo(explain_text(cfg) if explain else yaml.safe_dump(to_dict(cfg), sort_keys=False))


if __name__ == "__main__":
    app()
