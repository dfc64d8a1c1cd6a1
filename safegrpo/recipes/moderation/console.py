"""The moderation recipe's console output: a compact headline table (over all tiers) with the
judge-curve note, the judges note and the reward-hacking verdict."""

from __future__ import annotations

from typing import Any

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
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Held-out evaluation (all tiers; per tier: eval_table.md)", box=None,
                  pad_edge=False)
    table.add_column("split", no_wrap=True)
    table.add_column("method", no_wrap=True)
    for head, _ in HEADLINE_COLUMNS:
        table.add_column(head, justify="right", no_wrap=True)
    for row in summary["table"]:
        if row.get("tier") != "all":
            continue
        cells = ["-" if row.get(k) is None else f"{row[k]:.3f}" for _, k in HEADLINE_COLUMNS]
        table.add_row(row["split"], row["method"], *cells)
    parts = [table] + ([Text(summary["curve_note"])] if summary.get("curve_note") else [])
    parts.append(Text(judges_note(summary["table"]).strip()))
    if summary.get("hacking"):
        parts.append(Text(hacking_line(summary["hacking"])))
    return Group(*parts)


def hacking_line(h: dict[str, Any]) -> str:
    """One line: the detector's verdict per independent metric and how many checkpoints it saw."""
    pts = h.get("points") or []
    return verdict_line(h, f"{h.get('split')}, {len(pts)} checkpoints "
                           f"({', '.join(m for m, _ in pts)}; SFT start vs final only, no "
                           "intermediate checkpoint is evaluated)")
