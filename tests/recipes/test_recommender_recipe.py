"""2-step smoke run of the recommender demo (tiny model), data loading and the CLI."""

import json

import pytest
from typer.testing import CliRunner

from safegrpo.cli import app
from safegrpo.core.config import ConfigError, load_config
from safegrpo.envs.recommender.catalog import Catalog, load_users, parse_list, render_prompt
from safegrpo.recipes.recommender.data import load_data, safe_targets, split_training_users
from safegrpo.recipes.recommender.pipeline import RecommenderRecipeConfig, RecTask

SMOKE = ["tiny.vocab_size=400", "tiny.hidden=32", "tiny.layers=1", "tiny.heads=2", "sft.epochs=1",
         "data.sft_samples_per_user=1", "data.max_val_users=4", "policy.max_new_tokens=24",
         "grpo.steps=2", "grpo.prompts_per_step=2", "grpo.group_size=2", "grpo.save_every=1"]


def test_bundled_data_is_consistent_and_safe_targets_respect_constraints():
    cat, train, val = load_data(load_config(RecommenderRecipeConfig).data)
    assert len(cat.movies) == 240 and len(train) == 480 and len(val) == 120
    assert all(u.split == "train" for u in train) and len(load_users()) == 600
    oracle = cat.oracle(0.5)
    import random

    rng = random.Random(0)
    for u in train[:100]:
        t = safe_targets(u, cat, oracle, 5, rng)
        assert len(set(t)) == 5 and not any(u.avoid and oracle.violates(i, u.avoid) for i in t)
    # every catalog label parses back to its own id
    text = "\n".join(f"{i + 1}. {m.label}" for i, m in enumerate(cat.movies.values()))
    assert parse_list(text, cat) == list(cat.movies)


def test_split_training_users_keeps_every_user_once_and_refuses_a_bad_share():
    users = list(range(10))
    assert split_training_users(users, 1.0) == (users, users)
    assert split_training_users(users, 0.5) == ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9])
    assert split_training_users(users, 0.74) == ([0, 1, 2, 3, 4, 5, 6], [7, 8, 9])
    assert split_training_users(users, 0.01) == ([0], list(range(1, 10)))  # one user each side
    for bad in ("0", "1.5", "-0.2"):
        with pytest.raises(ConfigError, match="data.sft_user_share"):
            load_config(RecommenderRecipeConfig, None, [f"data.sft_user_share={bad}"])


def test_safe_sft_and_grpo_read_disjoint_users_below_share_one(tmp_path, monkeypatch):
    """sft_user_share < 1: Safe SFT learns from the first training users and every GRPO arm samples
    only the others (none of the users held out for evaluation)."""
    from safegrpo.recipes.base import RunContext
    from safegrpo.recipes.recommender import demo

    seen = {}
    monkeypatch.setattr(demo, "prepare_base", lambda cfg, cat: "base")
    monkeypatch.setattr(demo, "run_sft", lambda cfg, base, cat, users, log: seen.update(
        sft=users) or ("m", None))

    def grpo(cfg, arm, model, adapter, cat, users, val, resume):
        seen[arm] = users
        raise StopIteration

    monkeypatch.setattr(demo, "run_grpo_validated", grpo)
    cfg = load_config(RecommenderRecipeConfig, None, [f"out_dir={tmp_path}",
                                                      "data.eval_split=tune",
                                                      "data.sft_user_share=0.75"])
    ctx = RunContext(cfg, "demo")
    demo._setup(ctx)
    demo._sft(ctx)
    for arm in ("grpo_no_safety", None):
        with pytest.raises(StopIteration):
            demo._arm(arm)(ctx)
    sft, grpo_users = {u.id for u in seen["sft"]}, {u.id for u in seen["grpo_no_safety"]}
    held_out = {u.id for u in ctx.state["val"]}
    assert (len(sft), len(grpo_users), len(held_out)) == (270, 90, 120)
    assert not sft & grpo_users and not (sft | grpo_users) & held_out
    assert seen["grpo_safe_gdpo"] == seen["grpo_no_safety"]


def test_candidates_are_fixed_per_user_listed_before_top_k_and_hold_the_sft_targets():
    import random

    cfg = load_config(RecommenderRecipeConfig, None, ["data.candidates=16"])
    cat, train, val = load_data(cfg.data)
    _, plain_train, _ = load_data(load_config(RecommenderRecipeConfig).data)
    assert [u.history for u in train] == [u.history for u in plain_train]
    assert load_data(cfg.data)[1][:50] == train[:50]  # the same lists on every load
    oracle = cat.oracle(0.5)
    for u in train[:100] + val:
        c = u.candidates
        assert len(c) == len(set(c)) == 16 and not set(c) & set(u.history)
        assert len(set(c) & set(u.relevant)) == min(8, len(set(u.relevant) - set(u.history)))
        t = safe_targets(u, cat, oracle, 5, random.Random(0))
        n_safe = sum(not (u.avoid and oracle.violates(i, u.avoid)) for i in c)
        assert len(t) == 5 and len(set(t) & set(c)) == min(5, n_safe), (n_safe, t)
        assert not any(u.avoid and oracle.violates(i, u.avoid) for i in t)
    text = render_prompt(train[0], cat, 5)
    head, _, tail = text.partition("Candidates: ")
    assert head == render_prompt(plain_train[0], cat, 5).replace("Top 5:\n", "")
    assert tail == "; ".join(cat.movies[i].label for i in train[0].candidates) + "\nTop 5:\n"
    # relevant candidates are not all at the front: the order carries no label
    firsts = [u.candidates[0] in u.relevant for u in train]
    assert 0.3 < sum(firsts) / len(firsts) < 0.7


def test_tune_split_holds_training_users_out_and_never_reads_validation():
    cfg = load_config(RecommenderRecipeConfig, None, ["data.eval_split=tune",
                                                      "data.max_val_users=100"]).data
    _, train, tune = load_data(cfg)
    _, all_train, val = load_data(load_config(RecommenderRecipeConfig).data)
    ids = {id(u) for u in train}
    assert len(train) == 380 and len(tune) == 100 and not ids & {id(u) for u in tune}
    assert [u.history for u in train + tune] == [u.history for u in all_train]
    assert all(u.split == "train" for u in tune)  # no validation user is evaluated
    with pytest.raises(ValueError, match="cannot spare"):
        load_data(load_config(RecommenderRecipeConfig, None, ["data.eval_split=tune",
                                                              "data.max_val_users=480"]).data)


def test_two_step_recommender_demo_smoke(tmp_path, monkeypatch):
    from safegrpo.recipes.recommender.demo import render_summary, run_demo
    from tests.console_check import f3, has_row, render_at_80

    cfg = load_config(RecommenderRecipeConfig, None, [*SMOKE, f"out_dir={tmp_path}"])
    summary = run_demo(cfg, log=lambda *a: None)
    text = render_at_80(render_summary(summary), monkeypatch)  # the console headline
    for r in summary["table"]:
        assert has_row(text, r["policy"], *(f3(v) for k, v in r.items() if k != "policy")), text
    assert [r["policy"] for r in summary["table"]] == [
        "sft_only",
        "grpo_no_safety",
        "grpo_safe_gdpo",
    ]
    for r in summary["table"]:
        assert 0 <= r["recall@5"] <= 1 and 0 <= r["count_exact"] <= 1
    phases = summary["phase_time_s"]  # time per stage, as the moderation recipe writes it
    assert {"sft", "grpo_no_safety", "grpo"} <= set(phases), phases  # "grpo": the safe arm
    assert 0 < sum(phases.values()) <= summary["wall_time_s"]
    for arm in ("grpo_no_safety", "grpo_safe_gdpo"):
        hist = [json.loads(x) for x in (tmp_path / arm / "metrics.jsonl").read_text().splitlines()]
        assert [h["step"] for h in hist] == [0, 1]
        val = [
            json.loads(x) for x in (tmp_path / arm / "val_metrics.jsonl").read_text().splitlines()
        ]
        assert [v["step"] for v in val] == [1, 2] and "sensitivity_ratio@5" in val[0]
        # reward-hacking detector: Safe-SFT start + both checkpoints, three validation metrics
        hack = summary["hacking"][arm]
        assert hack["steps"] == [0, 1, 2] and hack["verdict"] in ("ok", "hacking", "unconfirmed")
        assert set(hack["metrics"]) == {"recall@5", "safe_recall@5", "ndcg@5",
                                          "sensitivity_ratio@5"}
        assert hack["metrics"]["recall@5"]["values"][0] == summary["table"][0]["recall@5"]
    assert "Reward hacking (" in (tmp_path / "eval_table.md").read_text()
    safe = [
        json.loads(x) for x in (tmp_path / "grpo_safe_gdpo/metrics.jsonl").read_text().splitlines()
    ]
    assert {"reward/relevance", "reward/safety", "reward/count"} <= set(safe[0])


def test_segment_map_matches_lines_of_a_real_tokenizer(tmp_path, tiny_lm_path):
    import torch
    from transformers import AutoTokenizer

    from safegrpo.core.types import LMRollout
    from safegrpo.rewards.recommender import RankRewardConfig

    tok = AutoTokenizer.from_pretrained(tiny_lm_path)
    cat = Catalog.load()
    labels = [m.label for m in list(cat.movies.values())[:3]]
    text = f"1. {labels[0]}\n2. {labels[1]}\n3. {labels[2]}"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    t = len(ids)
    ro = LMRollout(
        prompt_ids=torch.zeros(1, 1, dtype=torch.long),
        prompt_mask=torch.ones(1, 1, dtype=torch.long),
        completion_ids=torch.tensor([ids + [0]]),
        completion_mask=torch.tensor([[1] * t + [0]]),
        old_logprobs=torch.zeros(1, t + 1),
        ref_logprobs=None,
        group_ids=torch.zeros(1, dtype=torch.long),
        prompts=("p",),
        completions=(tok.decode(ids),),
    )
    task = RecTask([], cat, RankRewardConfig(k=5), tok)
    seg = task.segment_map(ro)[0].tolist()
    assert seg[-1] == -1 and seg[0] == 0 and sorted(set(seg[:-1])) == [0, 1, 2]
    for r in range(3):  # each rank's tokens decode to its line
        piece = tok.decode([i for i, s in zip(ids, seg[:-1], strict=True) if s == r])
        assert labels[r] in piece


@pytest.mark.parametrize(
    "bad,field",
    [
        ("reward.relevance=cubic", "relevance"),
        ("grpo.advantage=nope", "advantage"),
        ("reward.k=0", "k"),
        ("data.eval_split=test", "eval_split"),
        ("data.candidates=-1", "candidates"),
    ],
)
def test_recommender_config_errors(bad, field):
    r = CliRunner().invoke(app, ["config", "recommender", "-s", bad])
    assert r.exit_code == 2 and field in r.output


def test_train_cli_validates_per_checkpoint_and_resumes(tmp_path):
    args = ["train", "recommender", *[f"-s{x}" for x in SMOKE], "-s", f"out_dir={tmp_path}"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    result = json.loads(r.output.strip().splitlines()[-1])
    assert result["steps"] == 2 and 0 <= result["sensitivity_ratio@5"] <= 1
    last = json.loads((tmp_path / "grpo/val_metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 2 and {k: result[k] for k in last if k != "step"} == {
        k: v for k, v in last.items() if k != "step"
    }
    r = CliRunner().invoke(app, [*args, "-s", "grpo.steps=3", "--resume"])
    assert r.exit_code == 0, r.output
    val = [json.loads(x) for x in (tmp_path / "grpo/val_metrics.jsonl").read_text().splitlines()]
    assert [v["step"] for v in val] == [1, 2, 3]
    assert [
        json.loads(x)["step"] for x in (tmp_path / "grpo/metrics.jsonl").read_text().splitlines()
    ] == [0, 1, 2]
    bad = tmp_path / "users.jsonl"
    bad.write_text('{"id": "u1", "history": []}\n')
    r = CliRunner().invoke(app, [*args, "-s", f"data.users={bad}"])
    assert (
        r.exit_code == 2
        and "need id, history, relevant and split (missing 'relevant')"
        in " ".join(r.output.replace("│", " ").split())
    )
