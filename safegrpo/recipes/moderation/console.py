"""The moderation recipe's console output: a compact headline table (over all tiers) with the
judge-curve note, the judges note and the reward-hacking verdict."""

from __future__ import annotations

from typing import Any

from safegrpo.eval.console import compact_table, headline
from safegrpo.eval.reward_hacking import verdict_line
from safegrpo.eval.rewrites import judges_note

HEADLINE_COLUMNS = (("parse", "parse_rate"), ("unsafe\npass", "unsafe_pass_through"),
                    ("strict\npass", "strict_pass_through"),
                    ("over-\nrefusal", "benign_over_refusal"),
                    ("bad rewrite\n(held-out)", "rewrite_unsafe_indep"))
"""The console headline: over all tiers, the rates a reader compares first (per-tier and
per-component columns stay in eval_table.md / eval_headline.md)."""


def render_summary(summary: dict[str, Any]):
    """A compact headline (one row per split and method, over all tiers; fits 80 columns), the
    judges footnote and the reward-hacking verdict; the full tables are in the run folder."""
    rows = ([r["split"], r["method"], *(r.get(k) for _, k in HEADLINE_COLUMNS)]
            for r in summary["table"] if r.get("tier") == "all")
    table = compact_table(["split", "method", *(h for h, _ in HEADLINE_COLUMNS)], rows, labels=2)
    hacking = summary.get("hacking")
    return headline("Held-out evaluation (all tiers; per tier: eval_table.md)", table,
                    summary.get("curve_note"), judges_note(summary["table"]),
                    hacking_line(hacking) if hacking else None)


def hacking_line(h: dict[str, Any]) -> str:
    """One line: the detector's verdict per independent metric and how many checkpoints it saw."""
    pts = h.get("points") or []
    return verdict_line(h, f"{h.get('split')}, {len(pts)} checkpoints "
                           f"({', '.join(m for m, _ in pts)}; SFT start vs final only, no "
                           "intermediate checkpoint is evaluated)")
