"""`safegrpo` command line.

    safegrpo demo                       # moderation arena demo on CPU (embedded defaults)
    safegrpo demo --seeds 3             # 3 seeds, table of mean ± 95 % bootstrap interval
    safegrpo demo diffusion             # safe-diffusion GRPO demo on CPU (embedded shapes world)
    safegrpo demo redteam               # red-team attacker GRPO vs a tiny target
    safegrpo demo selfplay              # attacker-defender self-play in the arena
    safegrpo demo recommender           # Safe SFT + per-rank GRPO arms on a synthetic catalog
    safegrpo train redteam -c my.yaml   # setup, training and evaluation stages; JSON headline
    safegrpo eval moderation -c my.yaml # evaluate a trained run folder without training
    safegrpo recipes                    # the registered recipes
    safegrpo infer --checkpoint runs/redteam/grpo/checkpoints/step_000060 --prompt "Topic: hate"
    safegrpo export runs/redteam/grpo/checkpoints/step_000060 exported/  # merged HF / diffusers
    safegrpo train moderation -c configs/moderation_gpu.yaml --set grpo.steps=50 [--resume]
    safegrpo train moderation --skip sft # GRPO straight from the base model
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
    out_dir_problem,
    set_option,
)
from safegrpo.cli_export import export_cmd
from safegrpo.cli_judges import judges_app
from safegrpo.cli_models import models_app
from safegrpo.cli_serve import serve_app, served_judge  # noqa: F401 (re-exported)
from safegrpo.core.config import ConfigError, load_config, missing_paths, to_dict

app = typer.Typer(add_completion=True, no_args_is_help=True, help="Safety post-training with GRPO.")


@app.callback()
def _main(quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="no progress bars (also off when stderr is not a terminal, "
                              "or CI is set)")] = False) -> None:
    """Safety post-training with GRPO."""
    from safegrpo.core.progress import set_quiet

    set_quiet(quiet)


app.add_typer(serve_app, name="serve")
app.add_typer(models_app, name="models")
app.add_typer(judges_app, name="judges")
app.command("export")(export_cmd)

def _complete_recipe(incomplete: str) -> list[str]:
    from safegrpo.recipes.base import recipe_names

    return [r for r in recipe_names() if r.startswith(incomplete)]


RecipeArg = Annotated[str, typer.Argument(
    help="a registered recipe (`safegrpo recipes` lists them)", autocompletion=_complete_recipe)]
ResumeOpt = Annotated[bool, typer.Option(help="continue training stages from their latest "
                                              "checkpoints")]
SkipOpt = Annotated[list[str] | None, typer.Option(
    "--skip", help="skip a stage by name (repeatable), e.g. --skip sft")]


def _fail_cleanly(fn):
    """A checkpoint that cannot be resumed, or a run folder that cannot be evaluated, is one line
    on stderr and exit code 1, not a traceback."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from safegrpo.training.checkpoint import CheckpointError, storage_error

        try:
            return fn(*args, **kwargs)
        except (CheckpointError, FileNotFoundError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
        except Exception as e:
            reason = storage_error(e)  # the disk refused a write mid-run (full, quota, …)
            if reason is None:
                raise
            typer.echo(f"error: cannot write: {reason}", err=True)
            raise typer.Exit(1) from None
    return wrapper


def _recipe(name: str):
    from safegrpo.recipes.base import get_recipe

    try:
        return get_recipe(name)
    except KeyError as e:
        raise typer.BadParameter(e.args[0], param_hint="RECIPE") from None


def _load(recipe: str, config: Path | None, overrides: list[str] | None,
          out_dir: str | None = None, check_paths: bool = True):
    config_cls = _recipe(recipe).config_cls
    sets = list(overrides or [])
    if out_dir:
        sets.append(f"out_dir={out_dir}")
    try:
        cfg = load_config(config_cls, config, sets)
    except ConfigError as e:
        raise typer.BadParameter(str(e), param_hint="--config/--set") from None
    missing = missing_paths(cfg) if check_paths else []
    if check_paths and out_dir_problem(cfg.out_dir):  # before any model is built
        missing.append(out_dir_problem(cfg.out_dir))
    if missing:
        raise typer.BadParameter("; ".join(missing), param_hint="--config/--set")
    return cfg


def _default_demo_config(recipe: str) -> Path | None:
    preset = _recipe(recipe).preset
    if not preset:
        return None
    # safegrpo/configs is a link to the repo's configs/ and ships in the wheel as package data
    p = Path(__file__).resolve().parent / "configs" / preset
    return p if p.exists() else None


def _run(recipe: str, cfg, mode: str, resume: bool, skip: list[str] | None, log) -> dict:
    from safegrpo.recipes.base import RunContext, run_stages
    from safegrpo.training.checkpoint import CheckpointError
    try:
        return run_stages(_recipe(recipe), RunContext(cfg, mode, resume, log), tuple(skip or ()))
    except CheckpointError:
        raise  # one line on stderr and exit code 1 (_fail_cleanly)
    except ValueError as e:  # bad input met while building (data rows, judge options, …)
        hint = ("--skip" if "--skip" in str(e) else "RECIPE" if "cannot be restored" in str(e)
                else "--config/--set")
        raise typer.BadParameter(str(e), param_hint=hint) from None


@app.command()
@_fail_cleanly
def demo(
    recipe: RecipeArg = "moderation",
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    out_dir: Annotated[str | None, typer.Option(help="output folder")] = None,
    resume: ResumeOpt = False,
    seeds: Annotated[int, typer.Option(min=1, help="run seeds seed..seed+N-1 into "
                                       "out_dir/seed_<s>; print mean ± 95% interval")] = 1,
    skip: SkipOpt = None,
) -> None:
    """Run every stage of a recipe on its demo preset and print its evaluation table."""
    _offline_env()
    if config is None:
        config = _default_demo_config(recipe)
    cfg = _load(recipe, config, overrides, out_dir)
    from rich.console import Console

    rec = _recipe(recipe)
    console = Console()  # the terminal's width: the headline fits 80 columns
    if seeds > 1:
        from safegrpo.cli_seeds import run_seeds

        cfgs = [_load(recipe, config, [*(overrides or []), f"seed={cfg.seed + k}"],
                      str(Path(cfg.out_dir) / f"seed_{cfg.seed + k}")) for k in range(seeds)]
        run_seeds(rec, cfgs, cfg.out_dir, resume, console)
        console.print(f"results in {cfg.out_dir}/ (seeds_table.md, seeds_table.json, seed_*/)")
        return
    summary = _run(recipe, cfg, "demo", resume, skip, console.print)
    unreported = {s.name for s in rec.stages(cfg) if s.kind == "report"} & set(skip or ())
    if unreported:  # the table is what the report stage writes
        console.print(f"--skip {', '.join(sorted(unreported))}: no table to print; the other "
                      f"stages' outputs are in {cfg.out_dir}/")
        return
    console.print(rec.render(summary))
    console.print(f"wall time {summary['wall_time_s']:.0f}s; results in {cfg.out_dir}/ "
                  f"({rec.outputs})")


@app.command("train")
@_fail_cleanly
def train(recipe: RecipeArg, config: ConfigOpt = None, overrides: SetOpt = None,
          resume: ResumeOpt = False, skip: SkipOpt = None) -> None:
    """A recipe's setup, training and evaluation stages (no demo-only baselines); prints only the
    run's headline, as JSON."""
    _offline_env()
    cfg = _load(recipe, config, overrides)
    summary = _run(recipe, cfg, "train", resume, skip, lambda *a, **k: None)
    typer.echo(json.dumps(summary.get("headline", summary), default=str))


@app.command("eval")
@_fail_cleanly
def evaluate(recipe: RecipeArg, config: ConfigOpt = None, overrides: SetOpt = None) -> None:
    """Evaluate a trained run (out_dir of the config) without training: training stages
    restore their results from the run folder; prints the evaluation table."""
    _offline_env()
    cfg = _load(recipe, config, overrides)
    from rich.console import Console

    console = Console()
    summary = _run(recipe, cfg, "eval", False, (), console.print)
    console.print(_recipe(recipe).render(summary))


@app.command("recipes")
def list_recipes() -> None:
    """The registered recipes, their demo preset, their other presets (configs/NAME_*.yaml, run
    with -c) and the files a run writes."""
    import shutil
    import textwrap

    from safegrpo.recipes.base import recipe_names

    width = shutil.get_terminal_size().columns
    configs = Path(__file__).resolve().parent / "configs"
    for name in recipe_names():
        r = _recipe(name)
        more = sorted(p.name for p in configs.glob(f"{name}_*.yaml") if p.name != r.preset)
        other = f"; other presets: {', '.join(more)}" if more else ""
        typer.echo(textwrap.fill(f"{name}: preset {r.preset or '-'}{other}; writes {r.outputs}",
                                 width, subsequent_indent="    ", break_on_hyphens=False))


@app.command()
def infer(
    checkpoint: Annotated[
        Path, typer.Option(help="checkpoint folder (…/checkpoints/step_N) or a saved model")
    ],
    prompt: Annotated[list[str], typer.Option(help="prompt text (repeatable)")],
    samples: Annotated[int, typer.Option(help="completions per prompt")] = 1,
    max_new_tokens: int = 48,
    temperature: float = 1.0,
    greedy: Annotated[
        bool, typer.Option(help="greedy decoding (ignores samples/temperature)")
    ] = False,
    seed: int = 0,
) -> None:
    """Generate from a trained LM policy (full model or LoRA adapter over its base)."""
    _offline_env()
    from safegrpo.policies.inference import load_for_inference

    try:
        policy = load_for_inference(
            checkpoint, max_new_tokens=max_new_tokens, temperature=temperature
        )
    except (FileNotFoundError, ValueError) as e:
        raise typer.BadParameter(str(e), param_hint="--checkpoint") from None
    template = policy.cfg.prompt.template  # the role's recorded user template ({prompt} if none)
    for p in prompt:
        text = template.format(prompt=p)
        outs = [policy.complete([text], greedy=greedy, seed=seed + k)[0]
                for k in range(1 if greedy else samples)]
        typer.echo(json.dumps({"prompt": p, "completions": outs}))


@app.command("config")
def show_config(
    recipe: RecipeArg = "moderation",
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    explain: Annotated[
        bool,
        typer.Option("--explain", help="list every field: dotted name, type, value, docstring"),
    ] = False,
) -> None:
    """Print a recipe's resolved config (defaults <- preset <- overrides) as YAML, or with
    --explain every field with its type, value (and default) and documentation."""
    cfg = _load(recipe, config, overrides, check_paths=False)
    preset = _recipe(recipe).preset
    if config is not None:
        source = f"{config} over the library defaults"
    elif preset:
        source = (f"library defaults, not the demo's preset (safegrpo demo {recipe} runs "
                  f"configs/{preset}; add -c configs/{preset} to see it)")
    else:
        source = "library defaults (the demo runs these too)"
    typer.echo(f"# {recipe}: {source}")
    typer.echo(explain_text(cfg) if explain else yaml.safe_dump(to_dict(cfg), sort_keys=False))


if __name__ == "__main__":
    app()
