"""`safegrpo judges` sub-app (registered by cli.py): measure the text judges.

    safegrpo judges report [--split handwritten_eval] [--out judges.json] [--guard-model PATH]
    safegrpo judges report --split redteam_responses    # the red-team's toxicity judges
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

judges_app = typer.Typer(no_args_is_help=True, help="Measure the text judges on labelled prompts.")


@judges_app.command("report")
def judges_report(
    split: Annotated[str, typer.Option(
        help="handwritten_eval | holdout | redteam_responses (hand-written target responses, "
             "labelled toxic / safe) | a .jsonl file of prompts or responses")
                     ] = "handwritten_eval",
    out: Annotated[Path | None, typer.Option(help="write the report as JSON here")] = None,
    judge: Annotated[list[str] | None, typer.Option(
        help="judge to measure, repeatable (default: projection, embedding_classifier, "
             "profanity; on responses also lexicon; llama_guard when --guard-model is given)")
                     ] = None,
    guard_model: Annotated[str | None, typer.Option(
        help="Llama-Guard-style causal LM (path or hub id); adds llama_guard")] = None,
    embedder: Annotated[str, typer.Option(help="minilm | hashing (lexical, for tests)")] = "minilm",
    fit_handwritten: Annotated[bool, typer.Option(
        help="fit judges on the hand-written train split too (training does by default)")] = True,
    fit_per_tier: Annotated[int, typer.Option(help="projection fit prompts per tier")] = 60,
    seed: int = 0,
) -> None:
    """AUROC and accuracy at the operating threshold of every text judge, per tier; on target
    responses, of every toxicity judge the red-team recipe can train on or hold out, per
    category, each built as that recipe builds it."""
    from rich.console import Console

    from safegrpo.cli import _offline_env
    from safegrpo.eval import judge_report as jr

    _offline_env()
    try:
        recs = jr.split_records(split)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--split") from None
    responses = bool(recs) and isinstance(recs[0], jr.ResponseRecord)
    extra = ["lexicon"] if responses else []
    names = judge or [*jr.TEXT_JUDGES[:3], *extra, *(["llama_guard"] if guard_model else [])]
    if responses and (not fit_handwritten or fit_per_tier != 60):
        raise typer.BadParameter("target responses are scored by the red-team recipe's judges, "
                                 "fitted as it fits them", param_hint="--fit-*")
    try:
        judges = _build(names, responses, embedder, guard_model, fit_handwritten, fit_per_tier,
                        seed)
    except (ValueError, KeyError) as e:
        raise typer.BadParameter(str(e).strip("'\""), param_hint="--judge/--embedder") from None
    meta = {} if responses else {"fit_handwritten": fit_handwritten,
                                 "fit_per_tier": fit_per_tier, "seed": seed}
    report = jr.judge_report(recs, judges, split=split, embedder=embedder, **meta)
    Console().print(jr.render_report(report))
    if out:
        out.write_text(json.dumps(report, indent=1) + "\n")
        typer.echo(f"wrote {out}")


def _build(names: list[str], responses: bool, embedder: str, guard_model: str | None,
           fit_handwritten: bool, fit_per_tier: int, seed: int) -> dict:
    """The judges to measure: the red-team recipe's scorers for responses, else the text
    judges fitted on training prompts."""
    from safegrpo.eval import judge_report as jr
    from safegrpo.recipes.redteam.scorer import REFUSALS, report_judges

    if responses:
        from safegrpo.judges.embeddings import build_embedder

        fitted = {"projection", "embedding_classifier"} & set(names)
        return report_judges(names, build_embedder(embedder) if fitted else None, guard_model)
    return jr.build_text_judges(names, embedder=embedder, guard_model=guard_model,
                                fit_handwritten=fit_handwritten, fit_per_tier=fit_per_tier,
                                seed=seed, extra_safe=REFUSALS)
