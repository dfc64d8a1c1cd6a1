"""The console headline of the red-team, recommender, self-play and diffusion recipes fits 80
columns at COLUMNS=80: no cut cells, no wrapped table rows (the full tables stay in
eval_table.md)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.console_check import f3, has_row, render_at_80

HISTORY = [{"step": 0, "reward/total": 0.1}, {"step": 1, "reward/total": 0.5}]


def _attack_row(policy: str, up: float) -> dict:
    return {"policy": policy, "n": 32, "scorer": "embedding_classifier", "mean_toxicity": 0.12 + up,
            "success_rate": 0.25 + up, "heldout_success/profanity": 0.125 + up,
            "target_refusal_rate": 0.5, "repetition_ratio": 0.0625, "distinct_attacks": 0.875,
            "examples": []}


def test_redteam_headline(monkeypatch):
    from safegrpo.eval.intervals import Interval, format_interval
    from safegrpo.recipes.redteam.demo import hacking_check, render_summary
    from safegrpo.recipes.redteam.probe import probe_rows

    rows = [_attack_row("sft_attacker", 0.0), _attack_row("grpo_attacker", 0.3)]
    recs = [SimpleNamespace(label=lab) for lab in ["unsafe"] * 5 + ["safe"] * 4]
    probe = probe_rows(recs, ["I'm sorry."] * 3 + ["ok"] * 6, [0.9] * 9, {"profanity": [0.1] * 9},
                       "embedding_classifier")
    attack = "a gory scene with blood everywhere, painted like an old master with dramatic light"
    text = render_at_80(render_summary({
        "table": rows, "target_probe": probe, "hacking": hacking_check(HISTORY, rows),
        "top_attacks": [{"attack": attack, "toxicity": 0.93}]}), monkeypatch)
    keys = ["mean_toxicity", "success_rate", "heldout_success/profanity", "target_refusal_rate",
            "distinct_attacks"]
    for r in rows:  # an older run's rows have no self_bleu: shown as "-"
        assert has_row(text, r["policy"], *(f3(r[k]) for k in keys), "-"), text
    for r, name in zip(probe, ["unsafe (T1-T3)", "benign"], strict=True):
        cells = [format_interval(Interval(**r[k])) for k in r if k not in ("prompts", "n")]
        assert has_row(text, name, str(r["n"]), *cells), text
    assert "Reward hacking" in text and " ".join(attack.split()[:6]) in " ".join(text.split())


def test_recommender_headline(monkeypatch):
    from safegrpo.recipes.recommender.demo import render_summary

    k = 10
    rows = [{"policy": p, f"recall@{k}": 0.1 + i / 10, f"safe_recall@{k}": 0.15,
             f"ndcg@{k}": 0.2, f"sensitivity_ratio@{k}": 0.05, "count_exact": 0.5,
             "unmatched": 0.25, "repeats": 0.0}
            for i, p in enumerate(["sft_only", "grpo_no_safety", "grpo_safe_gdpo"])]
    hacking = {"grpo_safe_gdpo": {"flag": False, "verdict": "ok", "metrics": {},
                                  "steps": [0, 2, 4]}}
    text = render_at_80(render_summary({"k": k, "n_val_users": 40, "table": rows,
                                        "hacking": hacking}), monkeypatch)
    for r in rows:
        assert has_row(text, *(f3(v) if isinstance(v, float) else v for v in r.values())), text
    assert "grpo_safe_gdpo, 3 checkpoints" in " ".join(text.split())


def _round(k: int) -> dict:
    return {"round": k, "attack_success_before_defender_update": 0.5,
            "attack_success_after_defender_update": 0.25 - k / 10, "unsafe_allowed_before": 0.125,
            "unsafe_allowed_after": 0.0625, "heldout_success/profanity_before": 0.4,
            "heldout_success/profanity_after": 0.3,
            "heldout_unsafe_allowed/profanity_before": 0.2,
            "heldout_unsafe_allowed/profanity_after": 0.1}


def test_selfplay_headline(monkeypatch):
    from safegrpo.eval.moderation import headline_table
    from safegrpo.recipes.selfplay.demo import _rounds_md, render_summary, selfplay_hacking

    table = [{"split": s, "method": m, "tier": t, "n": 40, "parse_rate": 0.9,
              "unsafe_pass_through": 0.3,
              "strict_pass_through": 0.2, "benign_over_refusal": 0.1, "mean_reward": 0.5}
             for s in ("holdout", "handwritten") for m in ("before_selfplay", "after_selfplay")
             for t in ("T1", "all")]
    rewards = {"defender_reward_start": 0.1, "defender_reward_end": 0.2}
    rounds = [_round(k) | rewards | {"attacker_reward_end": 0.3 + k / 10} for k in range(2)]
    md = headline_table(table) + "\n\n" + _rounds_md(rounds)  # what eval_table.md holds
    text = render_at_80(render_summary({"table": table, "rounds": rounds, "markdown": md,
                                        "hacking": selfplay_hacking(table, rounds)}), monkeypatch)
    for r in (r for r in table if r["tier"] == "all"):
        assert has_row(text, r["split"], r["method"], "0.900", "0.300", "0.200", "0.100"), text
    for r in rounds:
        pairs = [(r[f"attack_success_{w}_defender_update"] for w in ("before", "after")),
                 (r[f"unsafe_allowed_{w}"] for w in ("before", "after")),
                 (r[f"heldout_success/profanity_{w}"] for w in ("before", "after")),
                 (r[f"heldout_unsafe_allowed/profanity_{w}"] for w in ("before", "after"))]
        assert has_row(text, str(r["round"]), *("→".join(map(f3, p)) for p in pairs)), text
    assert "on the attacker, 2 checkpoints" in " ".join(text.split())


@pytest.mark.parametrize("nudenet", [True, False])
def test_diffusion_headline(monkeypatch, nudenet):
    from safegrpo.recipes.diffusion.demo import hacking_check, render_summary

    def row(policy: str, rate: float) -> dict:
        return {"policy": policy, "concept_rate_unsafe": rate, "concept_rate_benign": 0.1,
                "benign_color_fidelity": 0.9, "shape_fidelity": 0.8, "background_match": 1.0,
                "benign_alignment": 0.31, "steering_reward": 0.2,
                "q16_unsafe_prompts": {"any": 0.4}, "q16_benign_any": 0.1,
                **({"nudenet_unsafe_prompts": {"images_flagged": 3}} if nudenet else {})}

    rows = [row("base", 0.5), row("grpo", 0.125)]
    text = render_at_80(render_summary({"table": rows, "hacking": hacking_check(HISTORY, rows)}),
                        monkeypatch)
    for r in rows:
        assert has_row(text, r["policy"], f3(r["concept_rate_unsafe"]), "0.100", "0.900", "0.800",
                       "1.000", "0.310", "0.400", *(["3"] if nudenet else [])), text
    assert "Reward hacking" in text
