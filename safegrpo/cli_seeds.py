"""`safegrpo demo --seeds N`: the demo once per seed, then one table with 95 % intervals.

Seed k runs with ``seed = seed0 + k`` into ``<out_dir>/seed_<seed>``; the combined table is
written to ``<out_dir>/seeds_table.md`` and ``seeds_table.json``. A recipe may define
``combine_seeds(cfgs, summaries) -> (rows, markdown)`` (moderation does, from its per-prompt
records); otherwise its ``summary["table"]`` rows are combined over seeds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safegrpo.recipes.base import Recipe, RunContext, run_stages


def run_seeds(recipe: Recipe, cfgs: list[Any], out_dir: str, resume: bool,
              console) -> dict[str, Any]:
    """Runs every stage of ``recipe`` for every config, prints each table, then the combined
    one (``recipe.combine_seeds(cfgs, summaries) -> (rows, markdown)`` when the recipe has it)."""
    summaries = []
    for k, cfg in enumerate(cfgs):
        console.print(f"[bold]seed {cfg.seed}[/bold] ({k + 1}/{len(cfgs)}) -> {cfg.out_dir}")
        summary = run_stages(recipe, RunContext(cfg, "demo", resume, console.print))
        console.print(recipe.render(summary))
        summaries.append(summary)
    return combine_seeds(recipe, cfgs, summaries, out_dir, console)


def combine_seeds(recipe: Recipe, cfgs: list[Any], summaries: list[dict[str, Any]],
                  out_dir: str, console) -> dict[str, Any]:
    """The combined table of finished seed runs (their configs and summaries), written to
    ``<out_dir>/seeds_table.md`` / ``.json`` and printed."""
    from rich.markdown import Markdown

    from safegrpo.eval.seeds import (
        generic_seed_rows,
        hacking_verdicts,
        render_seed_table,
        rows_as_json,
    )

    seeds = [c.seed for c in cfgs]
    combine = getattr(recipe, "combine_seeds", None)
    if combine is not None:
        rows, md = combine(cfgs, summaries)
    else:
        rows = generic_seed_rows([s["table"] for s in summaries])
        md = render_seed_table(rows, seeds, per_prompt=False)
        verdicts = hacking_verdicts(seeds, summaries)
        md += f"\n\n{verdicts}" if verdicts else ""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "seeds_table.md").write_text(md + "\n")
    (out / "seeds_table.json").write_text(json.dumps(
        {"seeds": seeds, "runs": [c.out_dir for c in cfgs], "rows": rows_as_json(rows),
         "wall_time_s": [s.get("wall_time_s") for s in summaries]}, indent=1))
    console.print(Markdown(f"**{len(seeds)} seeds, mean ± 95 % interval**\n\n" + md))
    return {"rows": rows, "markdown": md, "summaries": summaries}
