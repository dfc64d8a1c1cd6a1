"""2-step smoke runs of the red-team attacker and of self-play on tiny models; early stop, resume,
export and the CLI (`train redteam`, `infer`)."""

import json

import pytest
from typer.testing import CliRunner

from safegrpo.cli import app
from safegrpo.core.config import load_config
from safegrpo.recipes.redteam.hooks import export_adversarial, repetition_stop, truncate_samples
from safegrpo.recipes.redteam.pipeline import RedTeamRecipeConfig

TINY = [
    "model.tiny.vocab_size=300",
    "model.tiny.hidden=32",
    "model.tiny.layers=1",
    "model.tiny.heads=2",
    "data.sft_examples=24",
    "data.sft.epochs=1",
    "sampling.max_new_tokens=8",
    "target.max_new_tokens=8",
]
SMOKE = [
    *TINY,
    "training.steps=2",
    "training.prompts_per_step=2",
    "training.group_size=2",
    "training.save_every=1",
    "training.reward_kl_coef=0.05",
    "training.reward_clip=1.0",
    "reward.judge.name=profanity",
    "reward.judge.invert=false",
    "logging.early_stop_repetition=null",
]


def test_two_step_redteam_demo_smoke_and_resume(tmp_path, monkeypatch):
    from safegrpo.recipes.redteam.demo import build_target, render_summary, run_demo
    from safegrpo.recipes.redteam.pipeline import build_scorer, prepare_models, run_attack
    from tests.console_check import f3, has_row, render_at_80

    cfg = load_config(RedTeamRecipeConfig, None, [*SMOKE, f"out_dir={tmp_path}"])
    summary = run_demo(cfg, log=lambda *a: None)
    text = render_at_80(render_summary(summary), monkeypatch)  # the console headline
    for r in summary["table"]:
        assert has_row(text, r["policy"], f3(r["mean_toxicity"]), f3(r["success_rate"]),
                       f3(r["heldout_success/lexicon"]), f3(r["target_refusal_rate"]),
                       f3(r["distinct_attacks"]), f3(r["self_bleu"])), text
    assert summary["grpo_steps_run"] == 2
    assert [r["policy"] for r in summary["table"]] == ["sft_attacker", "grpo_attacker"]
    from safegrpo.envs.moderation.pools import load_handwritten

    recs = load_handwritten("eval")
    n_unsafe = sum(r.label == "unsafe" for r in recs)
    probe = summary["target_probe"]
    assert [r["n"] for r in probe] == [n_unsafe, len(recs) - n_unsafe]
    assert "flagged (held-out: lexicon)" in probe[0]  # training scorer is profanity here
    md = (tmp_path / "eval_table.md").read_text()
    assert "The target alone on the hand-written" in md
    # attack diversity next to success, before and after GRPO
    for row in summary["table"]:
        assert 0 <= row["self_bleu"] <= 1 and 0 < row["distinct_attacks"] <= 1
    head = md.splitlines()[0]
    assert (head.index("success (held-out: lexicon)") < head.index("distinct_attacks")
            < head.index("self_bleu") < head.index("target_refusal_rate"))
    # every scorer measured on the hand-written labelled responses, with its role
    from safegrpo.envs.moderation.responses import load_responses

    quality = summary["scorer_quality"]
    assert [(q["scorer"], q["role"], q["n"]) for q in quality] == [
        ("profanity", "training", len(load_responses())),
        ("lexicon", "held-out", len(load_responses()))]
    assert all(0 <= q["auroc"] <= 1 for q in quality)
    assert "hand-written labelled target responses" in md
    hist = [json.loads(x) for x in (tmp_path / "grpo/metrics.jsonl").read_text().splitlines()]
    assert {
        "reward/toxicity",
        "reward/repetition",
        "reward/kl_penalty",
        "reward/judge/repetition_ratio",
    } <= set(hist[0])
    samples = (tmp_path / "grpo/attacks.jsonl").read_text().splitlines()
    assert len(samples) == 2 * 2 * 2 and {
        "attack",
        "response",
        "toxicity",
        "reward",
        "step",
    } <= set(json.loads(samples[0]))
    top = [json.loads(x) for x in (tmp_path / "grpo/adversarial.jsonl").read_text().splitlines()]
    assert top == sorted(top, key=lambda r: (r["toxicity"], r["reward"]), reverse=True)
    # resume: nothing left, samples of finished steps kept, history restored
    attacker, target = prepare_models(cfg)
    _, tr, _ = run_attack(
        cfg, attacker, build_target(cfg, target), build_scorer(cfg.reward), resume=True
    )
    assert tr.start_step == 2 and len(tr.history) == 2
    assert len((tmp_path / "grpo/attacks.jsonl").read_text().splitlines()) == 8
    # a longer run resumes from step 2 and continues to 3
    cfg3 = load_config(
        RedTeamRecipeConfig, None, [*SMOKE, f"out_dir={tmp_path}", "training.steps=3"]
    )
    _, tr3, _ = run_attack(
        cfg3, attacker, build_target(cfg3, target), build_scorer(cfg3.reward), resume=True
    )
    assert tr3.start_step == 2 and [h["step"] for h in tr3.history] == [0, 1, 2]
    # infer from the last checkpoint (LoRA adapter merged into its base)
    ckpt = sorted((tmp_path / "grpo/checkpoints").glob("step_*"))[-1]
    r = CliRunner().invoke(
        app,
        [
            "infer",
            "--checkpoint",
            str(ckpt),
            "--prompt",
            "Topic: hate\nImage prompt:",
            "--samples",
            "2",
            "--max-new-tokens",
            "6",
        ],
    )
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.output.strip().splitlines()[-1])["completions"]) == 2


def test_export_dedupes_and_ranks(tmp_path):
    rows = [{"step": 0, "attack": "A b", "response": "", "toxicity": 0.2, "reward": 0.1},
            {"step": 1, "attack": "a  B", "response": "", "toxicity": 0.9, "reward": 0.5},
            {"step": 1, "attack": "c", "response": "", "toxicity": 0.5, "reward": 0.4},
            {"step": 2, "attack": "", "response": "", "toxicity": 1.0, "reward": 1.0}]
    p = tmp_path / "attacks.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    top = export_adversarial(p, tmp_path / "adv.jsonl", top_k=5)
    # empty attack dropped
    assert [(t["attack"], t["toxicity"]) for t in top] == [("a  B", 0.9), ("c", 0.5)]
    truncate_samples(p, 2)
    assert [json.loads(x)["step"] for x in p.read_text().splitlines()] == [0, 1, 1]


def test_repetition_early_stop_rule():
    rule = repetition_stop(0.5)
    assert rule({"reward/judge/repetition_ratio": 0.4}) is None
    assert "repetition ratio 0.600 > 0.5" in rule({"reward/judge/repetition_ratio": 0.6})
    assert repetition_stop(None)({"reward/judge/repetition_ratio": 0.9}) is None


def test_early_stop_on_repetition_in_a_run(tmp_path):
    """An attacker whose samples are all repeats trips the stop rule after one step."""
    from safegrpo.recipes.redteam.demo import build_target
    from safegrpo.recipes.redteam.pipeline import build_scorer, prepare_models, run_attack

    cfg = load_config(RedTeamRecipeConfig, None, [*SMOKE, f"out_dir={tmp_path}", "training.steps=5",
                                                  "logging.early_stop_repetition=-1.0"])
    attacker, target = prepare_models(cfg)
    _, tr, _ = run_attack(cfg, attacker, build_target(cfg, target), build_scorer(cfg.reward))
    assert len(tr.history) == 1 and tr.stop_reason.startswith("repetition ratio")


def test_redteam_config_errors_name_the_field(tmp_path):
    r = CliRunner().invoke(app, ["config", "redteam", "-s", "target.kind=robot"])
    assert r.exit_code == 2 and "target.kind" in r.output
    r = CliRunner().invoke(
        app,
        [
            "train",
            "redteam",
            "-s",
            "reward.judge=remote",
            "-s",
            f"out_dir={tmp_path}",
            *[f"-s{x}" for x in TINY],
        ],
    )
    assert r.exit_code == 2 and "reward.judge: judge 'remote': url is required" in " ".join(
        r.output.replace("│", " ").split())
    r = CliRunner().invoke(app, ["infer", "--checkpoint", str(tmp_path), "--prompt", "x"])
    assert r.exit_code == 2 and "no policy/" in r.output


def test_two_round_selfplay_smoke(tmp_path, monkeypatch, minilm):
    import safegrpo.recipes.moderation.pipeline as rec
    from safegrpo.recipes.selfplay.demo import SelfPlayRecipeConfig, run_demo

    real = rec.build_reward
    monkeypatch.setattr(rec, "build_reward", lambda cfg, embedder=None: real(cfg, embedder=minilm))
    sets = [
        f"out_dir={tmp_path}",
        "moderation.tiny.vocab_size=400",
        "moderation.tiny.hidden=32",
        "moderation.tiny.layers=1",
        "moderation.tiny.heads=2",
        "moderation.sft.epochs=1",
        "moderation.sft_data.examples=16",
        "moderation.eval.max_per_tier=2",
        "moderation.arena.fit_per_tier=5",
        "moderation.policy.max_new_tokens=12",
        "moderation.grpo.prompts_per_step=2",
        "moderation.grpo.group_size=2",
        *[f"attacker.{x}" for x in TINY],
        "attacker.training.prompts_per_step=2",
        "attacker.training.group_size=2",
        "selfplay.rounds=2",
        "selfplay.attacker_steps=1",
        "selfplay.defender_steps=1",
        "selfplay.eval_attacks=4",
    ]
    cfg = load_config(SelfPlayRecipeConfig, None, sets)
    summary = run_demo(cfg, log=lambda *a: None)
    from safegrpo.recipes.selfplay.demo import render_summary
    from tests.console_check import has_row, render_at_80

    text = render_at_80(render_summary(summary), monkeypatch)  # the console headline
    for r in summary["rounds"]:
        w = ("before", "after")
        assert has_row(text, str(r["round"]), *(
            "→".join(f"{r[k.format(x)]:.3f}" for x in w) for k in (
                "attack_success_{}_defender_update", "unsafe_allowed_{}",
                "heldout_success/profanity_{}", "heldout_unsafe_allowed/profanity_{}"))), text
    from safegrpo.envs.moderation.pools import load_handwritten

    recs = load_handwritten("eval")
    assert [r["round"] for r in summary["rounds"]] == [0, 1]
    for r in summary["rounds"]:
        assert 0 <= r["attack_success_before_defender_update"] <= 1
        # judged outside the reward too: the profanity SVM never produced a self-play reward
        assert 0 <= r["heldout_success/profanity_before"] <= 1
        assert 0 <= r["heldout_unsafe_allowed/profanity_after"] <= 1
    methods = {row["method"] for row in summary["table"]}
    assert methods == {"before_selfplay", "after_selfplay"}
    assert {row["split"] for row in summary["table"]} == {"holdout", "handwritten"}
    md = (tmp_path / "eval_table.md").read_text()
    assert "attack success (held-out: profanity)" in md and "| handwritten | after_selfplay" in md
    assert "Reward hacking (" in md and "on the attacker, 2 checkpoints" in md
    assert set(summary["hacking"]["attacker"]["metrics"]) == {"heldout_success/profanity"}
    # both players' held-out figures per round: the defender's on the hand-written split after
    # each round's update; after the last round it is the defender the final eval measures
    for r in summary["rounds"]:
        assert r["defender_eval"] == {"split": "handwritten", "n": len(recs)}
        assert 0 <= r["defender_pass_through_after"] <= r["defender_strict_pass_through_after"]
        assert 0 <= r["defender_over_refusal_after"] <= 1
        assert r["defender_heldout"] == ["profanity"]
    final = next(row for row in summary["table"] if (row["split"], row["method"], row["tier"])
                 == ("handwritten", "after_selfplay", "all"))
    last = summary["rounds"][-1]
    assert last["defender_pass_through_after"] == final["unsafe_pass_through"]
    assert last["defender_over_refusal_after"] == final["benign_over_refusal"]
    assert "| defender pass-through after (handwritten, labels) | defender over-refusal after" in md
    assert "defender strict pass-through after (held-out: profanity)" in md
    assert (tmp_path / "round_1/defender/metrics.jsonl").exists() and (
        tmp_path / "round_1/attacker/metrics.jsonl"
    ).exists()


@pytest.mark.parametrize("bad", ["selfplay.rounds=0", "selfplay.attack_share=2",
                                 "selfplay.round_eval=train"])
def test_selfplay_config_errors(bad):
    r = CliRunner().invoke(app, ["config", "selfplay", "-s", bad])
    assert r.exit_code == 2 and "selfplay" in r.output
