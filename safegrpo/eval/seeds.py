"""One table over several seeds of a demo: mean ± 95 % bootstrap interval (``eval.intervals``).

- Moderation (``moderation_seed_rows``): per (split, method), every per-prompt rate of
  ``eval.moderation.prompt_values`` gets a two-stage interval (seeds, then prompts within each
  seed); whole-set statistics (distinct rewrites / transforms, rewrite similarity) one value per
  seed, so their interval is over seeds only. A column may cover one tier or the aggregate
  ``T2+T3`` (``eval.moderation.TIER_GROUPS``): issue 25's transform target is read there.
- Any other demo (``generic_seed_rows``): rows of ``summary["table"]`` matched across seeds by
  their text fields; every numeric field gets an interval over seeds only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from safegrpo.envs.moderation.pools import TIERS
from safegrpo.eval.intervals import N_BOOT, Interval, bootstrap_interval, format_interval
from safegrpo.eval.markdown import markdown_table
from safegrpo.eval.moderation import in_tier, prompt_values
from safegrpo.eval.rewrites import collapse, judges_note, rewrite_of

# (column title, metric, tier or None for every prompt)
MODERATION_COLUMNS = (
    ("parse", "parse_rate", None), ("mean reward", "reward", None),
    *((f"pass {t}", "unsafe_pass_through", t) for t in TIERS[:3]),
    ("pass all", "unsafe_pass_through", None), ("over-refusal", "benign_over_refusal", None),
    ("strict pass all", "strict_pass_through", None),
    ("rewrite unsafe (held-out)", "rewrite_unsafe_indep", None),
    ("rewrite unsafe (training)", "rewrite_unsafe_train", None),
    ("distinct rewrites", "distinct_rewrite_ratio", None),
    ("safe transform T2+T3", "safe_transform_rate", "T2+T3"),
    ("distinct rewrites T2+T3", "distinct_rewrite_ratio", "T2+T3"),
    ("floor reject", "floor_reject_rate", None),
    ("rewriteable transform", "rewriteable_transform_rate", None),
)
SET_METRICS = ("distinct_rewrite_ratio", "rewrite_similarity")


def _seed_groups(records_by_seed: Sequence[Sequence[Mapping[str, Any]]]):
    """-> {(split, method): [records of seed k] for every seed k}."""
    out: dict[tuple[str, str], list[list[Mapping[str, Any]]]] = defaultdict(
        lambda: [[] for _ in records_by_seed])
    for k, recs in enumerate(records_by_seed):
        for r in recs:
            out[(r.get("split", "holdout"), r["method"])][k].append(r)
    return out


def moderation_seed_rows(records_by_seed: Sequence[Sequence[Mapping[str, Any]]],
                         n_boot: int = N_BOOT, seed: int = 0) -> list[dict[str, Any]]:
    """records_by_seed: one list of eval records per seed -> one row per (split, method):
    {split, method, seeds, n (prompts, summed over seeds), judges, <column>: Interval}."""
    rows = []
    for (split, method), per_seed in sorted(_seed_groups(records_by_seed).items()):
        row: dict[str, Any] = {"split": split, "method": method,
                               "seeds": sum(1 for recs in per_seed if recs),
                               "n": sum(len(recs) for recs in per_seed),
                               "judges": next((r.get("judges") for recs in per_seed for r in recs
                                               if r.get("judges")), None)}
        for title, metric, tier in MODERATION_COLUMNS:
            per_tier = [[r for r in recs if in_tier(r, tier)] for recs in per_seed]
            if metric in SET_METRICS:
                groups = [[collapse([w for w in (rewrite_of(r) for r in recs
                                                 if r["decision"] == "transform") if w])[metric]]
                          for recs in per_tier]
            else:
                groups = [[prompt_values(r)[metric] for r in recs] for recs in per_tier]
            row[title] = bootstrap_interval(groups, n_boot=n_boot, seed=seed)
        rows.append(row)
    return rows


COUNT_FIELDS = ("n", "n_unsafe_images", "n_benign_images")
"""Numeric fields that count what was evaluated: summed over seeds, not intervalled."""


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def generic_seed_rows(tables: Sequence[Sequence[Mapping[str, Any]]], n_boot: int = N_BOOT,
                      seed: int = 0) -> list[dict[str, Any]]:
    """tables: ``summary["table"]`` of every seed -> rows keyed by their text fields, numeric
    fields as an Interval over seeds."""
    groups: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for table in tables:
        for r in table:
            groups[tuple((k, v) for k, v in r.items() if isinstance(v, str))].append(r)
    rows = []
    for key, rs in groups.items():
        nums = list(dict.fromkeys(k for r in rs for k, v in r.items() if _is_number(v)))
        row: dict[str, Any] = {**dict(key), "seeds": len(rs)}
        for k in nums:
            if k in COUNT_FIELDS:
                row[k] = sum(int(r[k]) for r in rs if _is_number(r.get(k)))
                continue
            row[k] = bootstrap_interval([[r[k]] for r in rs if _is_number(r.get(k))],
                                        n_boot=n_boot, seed=seed)
        rows.append(row)
    return rows


def render_seed_table(rows: Sequence[Mapping[str, Any]], seeds: Sequence[int],
                      n_boot: int = N_BOOT, per_prompt: bool = True) -> str:
    """Markdown: text fields as they are, Intervals as '0.123 ± 0.045'; a footnote states the
    seeds, n and how the interval was made (``per_prompt``: the rows hold per-prompt values, so
    prompts are resampled within each seed; else one value per seed)."""
    cols = list(dict.fromkeys(k for r in rows for k in r if k != "judges"))

    def cell(v: Any) -> str:
        if isinstance(v, Interval) or v is None:
            return format_interval(v)
        return str(v)
    lines = markdown_table(cols, ([cell(r.get(c)) for c in cols] for r in rows)).split("\n")
    how = ("resampling seeds and the prompts within each seed; n = evaluated prompts summed "
           "over seeds; whole-set statistics (distinct rewrites) resample seeds only"
           if per_prompt else
           "resampling the seeds' values, one per seed, so with 3 seeds the interval is a rough "
           "spread, not a precise bound; counts such as n are summed over seeds")
    note = (f"\n\nmean ± half-width of the 95 % percentile bootstrap interval ({n_boot} "
            f"replicates, {how}); seeds {', '.join(map(str, seeds))}.")
    return "\n".join(lines) + note + judges_note(rows)


def hacking_verdicts(seeds: Sequence[int], summaries: Sequence[Mapping[str, Any]]) -> str:
    """'Reward-hacking detector: seed 0: ok, seed 1: hacking.' from each summary's ``hacking``
    report (a report of several players, e.g. self-play's, as 'defender ok / attacker hacking');
    '' when no summary has one."""
    def one(h: Mapping[str, Any]) -> str:
        if "verdict" in h:
            return str(h["verdict"])
        parts = [f"{k} {v['verdict']}" for k, v in h.items()
                 if isinstance(v, Mapping) and "verdict" in v]
        return " / ".join(parts) or "-"
    if not any(s.get("hacking") for s in summaries):
        return ""
    cells = ", ".join(f"seed {k}: {one(s.get('hacking') or {})}"
                      for k, s in zip(seeds, summaries, strict=True))
    return f"Reward-hacking detector: {cells}."


def rows_as_json(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Intervals as {mean, lo, hi, n, seeds, level} dicts."""
    return [{k: v.as_dict() if isinstance(v, Interval) else v for k, v in r.items()}
            for r in rows]
