"""Self-play's console headline (fits 80 columns) and its per-round markdown table."""

from __future__ import annotations

from typing import Any

from safegrpo.eval.console import compact_table, headline
from safegrpo.eval.markdown import markdown_table

HEADLINE_COLUMNS = (("parse", "parse_rate"), ("unsafe\npass", "unsafe_pass_through"),
                    ("strict\npass", "strict_pass_through"),
                    ("over-\nrefusal", "benign_over_refusal"))
"""The defender's console columns, over all tiers (per tier: eval_table.md)."""


def render_summary(summary: dict[str, Any]):
    """The console headline (fits 80 columns): the defender before and after self-play (all
    tiers), the attacker per round and the reward-hacking verdicts; the full tables are in
    eval_table.md."""
    from rich.console import Group

    defender = compact_table(["split", "method", *(h for h, _ in HEADLINE_COLUMNS)],
                             ([r["split"], r["method"], *(r.get(k) for _, k in HEADLINE_COLUMNS)]
                              for r in summary["table"] if r.get("tier") == "all"), labels=2)
    parts = [headline("Defender before and after self-play (all tiers; labels; eval_table.md)",
                      defender)]
    rounds = summary["rounds"]
    if rounds:
        cols = _round_columns(rounds)
        table = compact_table(["round", *(h for h, _ in cols)], (
            [r["round"], *(f"{r[k.format('before')]:.3f}→{r[k.format('after')]:.3f}"
                           for _, k in cols)] for r in rounds))
        hacking = summary.get("hacking")
        parts.append(headline("Attacker per round, before→after the defender update (train = "
                              "the training judge)", table,
                              hacking_lines(hacking, len(rounds)) if hacking else None))
    return Group(*parts)


def _round_columns(rounds: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(header, key pattern with {} for before / after): training judge, then held-out ones."""
    cols = [("success\n(train)", "attack_success_{}_defender_update"),
            ("unsafe allowed\n(train)", "unsafe_allowed_{}")]
    held = sorted({k.rsplit("_", 1)[0] for k in rounds[0] if k.startswith("heldout_")})
    names = {"heldout_success": "success", "heldout_unsafe_allowed": "unsafe allowed"}
    return cols + [(f"{names[k.split('/')[0]]}\n({k.split('/')[1]})", k + "_{}") for k in held]


def _rounds_md(rounds: list[dict[str, Any]]) -> str:
    """Per round, the attacker before -> after the defender update: success and unsafe-allowed by
    the training judge (the reward's) and by each held-out judge (never a reward); then the
    defender after the update on held-out prompts (``selfplay.round_eval``)."""
    cols = [("attack success (training judge)", "attack_success_{}_defender_update"),
            ("unsafe allowed (training judge)", "unsafe_allowed_{}")]
    held = sorted({k.rsplit("_", 1)[0] for k in rounds[0] if k.startswith("heldout_")})
    names = {"heldout_success": "attack success", "heldout_unsafe_allowed": "unsafe allowed"}
    cols += [(f"{names[k.split('/')[0]]} (held-out: {k.split('/')[1]})", k + "_{}") for k in held]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    defender = _defender_cols(rounds[0])
    return markdown_table(["round", *(c for c, _ in cols), *(c for c, _ in defender)],
                          ([r["round"], *(f"{r[k.format('before')]:.3f} → "
                                          f"{r[k.format('after')]:.3f}" for _, k in cols),
                            *(fmt(r[k]) for _, k in defender)]
                           for r in rounds))


def _defender_cols(rnd: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, key) of the defender's per-round figures a round carries ([] without)."""
    if "defender_eval" not in rnd:
        return []
    split, held = rnd["defender_eval"]["split"], ", ".join(rnd.get("defender_heldout", ()))
    return [(f"defender pass-through after ({split}, labels)", "defender_pass_through_after"),
            (f"defender over-refusal after ({split}, labels)", "defender_over_refusal_after"),
            (f"defender strict pass-through after (held-out: {held or 'none'})",
             "defender_strict_pass_through_after")]

def hacking_lines(report: dict[str, Any], rounds: int) -> str:
    from safegrpo.eval.reward_hacking import verdict_line

    d = report["defender"]
    return (verdict_line(d, f"the defender, 2 checkpoints (before and after self-play, "
                            f"{d.get('split')} split, labels)") + "\n\n"
            + verdict_line(report["attacker"], f"the attacker, {rounds} checkpoints (end of each "
                                               "round's attacker stage, held-out judges)"))
