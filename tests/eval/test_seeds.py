"""Seeds and intervals: per-seed records combined into one table, and `demo --seeds`."""

import json
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from safegrpo.eval.seeds import (
    generic_seed_rows,
    hacking_verdicts,
    moderation_seed_rows,
    render_seed_table,
)


def rec(tier, label, decision, seed_reward, split="handwritten", method="m"):
    return {"split": split, "method": method, "tier": tier, "label": label, "decision": decision,
            "reward": seed_reward, "components": {}, "rewrite_unsafe_indep": None}


def seed_records(k):
    """Seed k: 2 unsafe prompts (seed 0 lets one through, seed 1 none), 1 benign allowed."""
    return [rec("T1", "unsafe", "allow" if k == 0 else "reject", 0.1 * k),
            rec("T2", "unsafe", "reject", 0.1 * k), rec("benign", "safe", "allow", 0.1 * k)]


def test_moderation_rows_average_seeds_and_keep_n():
    (row,) = moderation_seed_rows([seed_records(0), seed_records(1)], n_boot=2000)
    assert (row["split"], row["method"], row["seeds"], row["n"]) == ("handwritten", "m", 2, 6)
    pas = row["pass all"]
    assert pas.mean == pytest.approx(0.25) and pas.n == 4  # mean of 0.5 and 0.0
    assert pas.lo == 0.0 and pas.hi == pytest.approx(0.75, abs=0.26)
    assert row["pass T1"].mean == 0.5 and row["pass T3"] is None
    assert row["over-refusal"].format() == "0.000 ± 0.000"
    assert row["mean reward"].mean == pytest.approx(0.05)
    assert row["strict pass all"].mean == pytest.approx(0.25)  # judged: no transform
    md = render_seed_table([row], [0, 1])
    assert "| handwritten | m | 2 | 6 |" in md and "0.250 ± " in md
    assert "seeds 0, 1" in md and "95 % percentile bootstrap" in md


def test_generic_rows_bootstrap_over_seeds():
    tables = [[{"policy": "grpo", "success_rate": v, "examples": []}] for v in (0.2, 0.4, 0.6)]
    (row,) = generic_seed_rows(tables, n_boot=500)
    assert row["policy"] == "grpo" and row["seeds"] == 3 and "examples" not in row
    assert row["success_rate"].mean == pytest.approx(0.4) and row["success_rate"].n == 3
    # counts are summed, not intervalled (a "64.000 ± 0.000" n told nothing)
    tables = [[{"policy": "grpo", "n": 64, "rate": v}] for v in (0.2, 0.4)]
    (row,) = generic_seed_rows(tables, n_boot=100)
    assert row["n"] == 128 and isinstance(row["n"], int)
    md = render_seed_table([row], [0, 1], per_prompt=False)
    assert "| grpo | 2 | 128 |" in md and "one per seed" in md and "within each seed" not in md


def test_hacking_verdicts_per_seed_and_per_player():
    assert hacking_verdicts([0, 1], [{}, {"table": []}]) == ""
    line = hacking_verdicts([0, 1], [{"hacking": {"verdict": "ok", "flag": False}},
                                     {"hacking": {"flag": True,
                                                  "defender": {"verdict": "hacking"},
                                                  "attacker": {"verdict": "ok"}}}])
    assert line == ("Reward-hacking detector: seed 0: ok, seed 1: defender hacking / "
                    "attacker ok.")


def fake_recipe(calls):
    from safegrpo.recipes.base import Stage, get_recipe

    conf = get_recipe("moderation").config_cls

    def report(ctx):
        calls.append((ctx.cfg.seed, ctx.cfg.out_dir))
        ctx.summary = {"table": [{"method": "m", "rate": 0.1 * ctx.cfg.seed}]}

    class Fake:
        name, config_cls, preset, outputs, composes = "moderation", conf, None, "", ()

        def stages(self, cfg):
            return [Stage("report", report, "report")]

        def render(self, summary):
            return "table"
    return Fake


def test_demo_seeds_runs_each_seed_into_its_folder(tmp_path, monkeypatch):
    from safegrpo import cli

    calls = []
    from safegrpo.recipes.base import RECIPES, discover

    discover()
    monkeypatch.setitem(RECIPES._items, "moderation", fake_recipe(calls))
    r = CliRunner().invoke(cli.app, ["demo", "--seeds", "3", "--set", "seed=5",
                                     "--out-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert calls == [(s, str(tmp_path / f"seed_{s}")) for s in (5, 6, 7)]
    out = json.loads((tmp_path / "seeds_table.json").read_text())
    assert out["seeds"] == [5, 6, 7]
    assert out["rows"][0]["rate"]["mean"] == pytest.approx(0.6)
    assert "0.600 ± " in (tmp_path / "seeds_table.md").read_text()
    r = CliRunner().invoke(cli.app, ["demo", "--seeds", "0"])
    assert r.exit_code == 2 and "--seeds" in r.output


def test_moderation_combine_seeds_reads_each_runs_records(tmp_path):
    from safegrpo.recipes.moderation.demo import combine_seeds

    cfgs = []
    for k in (0, 1):
        d = tmp_path / f"seed_{k}"
        d.mkdir()
        lines = [json.dumps(r) + "\n" for r in seed_records(k)]
        (d / "eval_records.jsonl").write_text("".join(lines))
        cfgs.append(SimpleNamespace(seed=k, out_dir=str(d)))
    rows, md = combine_seeds(cfgs, [{"hacking": {"verdict": "ok"}}, {}])
    assert rows[0]["pass all"].mean == pytest.approx(0.25)
    assert "seed 0: ok, seed 1: -" in md


def test_moderation_rows_have_the_t2_t3_transform_columns():
    """Per seed: T2+T3 safe transform 1/4 (one transform both judges pass, one the held-out judge
    flags), floor reject 1/1, rewriteable transform 3/4; distinct rewrites 1.0 on T2+T3 but 2/3
    over all (the T1 rewrite repeats the T2 one)."""
    def r(tier, decision, nsr, rewrite=None, flagged=None):
        return {**rec(tier, "unsafe", decision, 0.0), "no_safe_rewrite": nsr, "rewrite": rewrite,
                "rewrite_unsafe_indep": flagged,
                "components": {"judge/s_safe": 0.9} if rewrite else {}}
    recs = [r("T2", "transform", False, "a man reading", False), r("T3", "allow", False),
            r("T2", "reject", True), r("T3", "transform", False, "a man with a knife", True),
            r("T1", "transform", False, "a man reading", False)]
    (row,) = moderation_seed_rows([recs, recs], n_boot=200)
    assert row["safe transform T2+T3"].mean == 0.25 and row["safe transform T2+T3"].n == 8
    assert row["distinct rewrites T2+T3"].mean == 1.0
    assert row["distinct rewrites"].mean == pytest.approx(2 / 3)
    assert row["floor reject"].mean == 1.0
    assert row["rewriteable transform"].mean == 0.75
