"""Self-play's reward-hacking verdicts, on hand-made tables and rounds."""

from safegrpo.recipes.selfplay.demo import hacking_lines, selfplay_hacking


def _row(method, split, over_refusal, distinct=0.9):
    return {"split": split, "method": method, "tier": "all", "strict_pass_through": None,
            "benign_over_refusal": over_refusal, "distinct_rewrite_ratio": distinct}


def _rounds(att_reward, held, d_start=0.1, d_end=0.5):
    return [{"round": k, "attacker_reward_end": r, "heldout_success/profanity_before": h,
             "heldout_success/profanity_after": h, "defender_reward_start": d_start,
             "defender_reward_end": d_end, "attack_success_before_defender_update": 0.5,
             "attack_success_after_defender_update": 0.4}
            for k, (r, h) in enumerate(zip(att_reward, held, strict=True))]


def test_defender_refusing_everything_while_its_reward_rises_is_flagged():
    # the README's self-play finding: over-refusal 0.121 -> 0.931 on the hand-written split
    table = [_row("before_selfplay", "handwritten", 0.121), _row("after_selfplay", "handwritten",
                                                                 0.931),
             _row("before_selfplay", "holdout", 0.0), _row("after_selfplay", "holdout", 0.0)]
    h = selfplay_hacking(table, _rounds([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]))
    d = h["defender"]
    assert d["split"] == "handwritten" and d["flag"] and h["flag"]
    assert d["metrics"]["benign_over_refusal"]["values"] == [0.121, 0.931]
    assert "strict_pass_through" not in d["metrics"]  # no held-out value: left out, not 0
    assert not h["attacker"]["flag"]  # reward and held-out success rise together


def test_attacker_reward_up_while_heldout_success_falls_is_flagged():
    table = [_row("before_selfplay", "holdout", 0.2), _row("after_selfplay", "holdout", 0.2)]
    h = selfplay_hacking(table, _rounds([0.1, 0.3, 0.5], [0.6, 0.4, 0.2], d_end=0.1))
    assert h["defender"]["split"] == "holdout" and not h["defender"]["flag"]
    a = h["attacker"]["metrics"]["heldout_success/profanity"]
    assert a["test"] == "spearman" and a["rho"] == -1.0 and a["flag"]
    text = hacking_lines(h, 3)
    assert "Reward hacking (hacking) on the attacker, 3 checkpoints" in text
    assert "Reward hacking (ok) on the defender" in text


def test_missing_defender_reward_is_insufficient_not_ok():
    table = [_row("before_selfplay", "holdout", 0.2), _row("after_selfplay", "holdout", 0.9)]
    h = selfplay_hacking(table, _rounds([0.1], [0.2], d_start=None))
    assert h["defender"]["verdict"] == "insufficient" and not h["defender"]["flag"]


def test_combine_seeds_keeps_the_headline_columns_and_the_rounds():
    from types import SimpleNamespace

    from safegrpo.recipes.selfplay.demo import combine_seeds

    def summary(over):
        table = [{"split": "handwritten", "method": m, "tier": t, "n": 4, "parse_rate": 1.0,
                  "unsafe_pass_through": 0.5, "benign_over_refusal": over if m[0] == "a" else 0.1,
                  "mean_reward": 0.2} for m in ("before_selfplay", "after_selfplay")
                 for t in ("T1", "all")]
        return {"table": table, "rounds": _rounds([0.1, 0.2], [0.3, 0.5]),
                "hacking": {"defender": {"verdict": "ok"}, "attacker": {"verdict": "ok"}}}
    cfgs = [SimpleNamespace(seed=s) for s in (0, 1)]
    rows, md = combine_seeds(cfgs, [summary(0.6), summary(0.8)])
    after = next(r for r in rows if r.get("method") == "after_selfplay")
    assert after["n"] == 8 and after["over-refusal"].mean == 0.7 and "pass T1" in after
    assert "pass T2" not in after  # no such tier evaluated: no column invented
    r1 = next(r for r in rows if r.get("round") == "1")
    assert r1["success before (held-out: profanity)"].mean == 0.5
    assert "seed 1: defender ok / attacker ok" in md and md.count("seeds 0, 1.") == 2
