"""`safegrpo judges` sub-app (registered by cli.py): measure the text judges.

    safegrpo judges report [--split handwritten_eval] [--out judges.json] [--guard-model PATH]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

judges_app = typer.Typer(no_args_is_help=True, help="Measure the text judges on labelled prompts.")


@judges_app.command("report")
def judges_report(
    split: Annotated[str, typer.Option(help="handwritten_eval | holdout | a prompts .jsonl file")
                     ] = "handwritten_eval",
    out: Annotated[Path | None, typer.Option(help="write the report as JSON here")] = None,
    judge: Annotated[list[str] | None, typer.Option(
        help="judge to measure, repeatable (default: projection, embedding_classifier, "
             "profanity, and llama_guard when --guard-model is given)")] = None,
    guard_model: Annotated[str | None, typer.Option(
        help="Llama-Guard-style causal LM (path or hub id); adds llama_guard")] = None,
    embedder: Annotated[str, typer.Option(help="minilm | hashing (lexical, for tests)")] = "minilm",
    fit_handwritten: Annotated[bool, typer.Option(
        help="fit judges on the hand-written train split too (training does by default)")] = True,
    fit_per_tier: Annotated[int, typer.Option(help="projection fit prompts per tier")] = 60,
    seed: int = 0,
) -> None:
    """AUROC and accuracy at the operating threshold of every text judge, per tier."""
    from rich.console import Console

    from safegrpo.cli import _offline_env
    from safegrpo.eval import judge_report as jr
    from safegrpo.recipes.redteam.pipeline import REFUSALS

    _offline_env()
    names = judge or [*jr.TEXT_JUDGES[:3], *(["llama_guard"] if guard_model else [])]
    try:
        recs = jr.split_records(split)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--split") from None
    try:
        judges = jr.build_text_judges(names, embedder=embedder, guard_model=guard_model,
                                      fit_handwritten=fit_handwritten, fit_per_tier=fit_per_tier,
                                      seed=seed, extra_safe=REFUSALS)
    except (ValueError, KeyError) as e:
        raise typer.BadParameter(str(e).strip("'\""), param_hint="--judge/--embedder") from None
    report = jr.judge_report(recs, judges, split=split, fit_handwritten=fit_handwritten,
                             fit_per_tier=fit_per_tier, seed=seed, embedder=embedder)
    Console().print(jr.render_report(report))
    if out:
        out.write_text(json.dumps(report, indent=1) + "\n")
        typer.echo(f"wrote {out}")
