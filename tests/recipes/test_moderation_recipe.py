"""2-step smoke run of the whole moderation recipe (tiny model) and the CLI around it."""

import json

import pytest
from typer.testing import CliRunner

from safegrpo.cli import app
from safegrpo.core.config import load_config
from safegrpo.recipes.moderation.demo import run_demo
from safegrpo.recipes.moderation.pipeline import ModerationRecipeConfig

SMOKE = ["tiny.vocab_size=400", "tiny.hidden=32", "tiny.layers=1", "tiny.heads=2", "sft.epochs=1",
         "sft_data.examples=16", "grpo.steps=2", "grpo.prompts_per_step=2", "grpo.group_size=2",
         "grpo.save_every=1", "grpo.beta=0.02", "eval.max_per_tier=2", "arena.fit_per_tier=5",
         "policy.max_new_tokens=16", "eval.splits=holdout"]


def test_two_step_recipe_smoke(tmp_path, monkeypatch, minilm):
    import safegrpo.recipes.moderation.pipeline as rec

    real = rec.build_reward
    monkeypatch.setattr(rec, "build_reward", lambda cfg, embedder=None: real(cfg, embedder=minilm))
    monkeypatch.setattr("safegrpo.recipes.moderation.demo.build_reward", rec.build_reward)
    cfg = load_config(ModerationRecipeConfig, None, [*SMOKE, f"out_dir={tmp_path}"])
    summary = run_demo(cfg, log=lambda *a: None)
    assert summary["grpo_steps_run"] == 2
    methods = {r["method"] for r in summary["table"]}
    assert methods == {"keyword_filter", "always_reject", "judge_threshold", "sft_only", "grpo"}
    for f in (
        "eval_records.jsonl",
        "eval_table.md",
        "reward_curve.png",
        "judge_curve.png",
        "judge_curve.md",
        "config.yaml",
        "grpo/metrics.jsonl",
    ):
        assert (tmp_path / f).exists(), f
    rows = [json.loads(x) for x in (tmp_path / "eval_records.jsonl").read_text().splitlines()]
    assert len(rows) == 5 * 8  # 5 methods x 4 tiers x 2 prompts
    # the embedded judge's curve on the split, every defender placed against it
    curve = {d["method"]: d for d in summary["judge_curve"]["holdout"]}
    assert set(curve) == methods and not curve["judge_threshold"]["below"]
    note = summary["curve_note"]
    assert (note is None) == curve["grpo"]["below"]
    assert note is None or "SmolLM2 preset" in note
    always = [
        r for r in summary["table"] if r["method"] == "always_reject" and r["tier"] == "benign"
    ][0]
    assert always["benign_over_refusal"] == 1.0 and always["reject_rate"] == 1.0
    # resume after the run: nothing left to do, history restored from the checkpoint
    policy = rec.load_defender(cfg, str(tmp_path / "base"))
    rec.run_sft(cfg, policy, resume=True)  # the finished SFT stage is loaded, not retrained
    tr = rec.run_grpo(cfg, policy, rec.build_reward(cfg), resume=True)
    assert tr.start_step == 2 and len(tr.history) == 2


def test_cli_errors_name_the_field():
    r = CliRunner().invoke(app, ["config", "--set", "grpo.group_size=1"])
    assert r.exit_code == 2 and "grpo: group_size must be >= 2" in r.output
    r = CliRunner().invoke(app, ["config", "--set", "arena.prompt_template=no placeholder"])
    assert r.exit_code == 2 and "prompt_template" in r.output
    r = CliRunner().invoke(app, ["demo", "painting"])
    assert r.exit_code == 2 and "valid: diffusion, moderation" in " ".join(
        r.output.replace("│", " ").split()
    )
    r = CliRunner().invoke(app, ["config", "-s", "grpo.steps=7"])
    assert r.exit_code == 0 and "steps: 7" in r.output


def test_cli_serve_scorer_rejects_bad_input(monkeypatch):
    r = CliRunner().invoke(app, ["serve", "scorer", "--judge", "hf_classifier"])
    assert r.exit_code == 2 and "--model" in r.output
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    r = CliRunner().invoke(app, ["serve", "scorer", "--api-key-env", "NO_SUCH_KEY"])
    assert r.exit_code == 2 and "NO_SUCH_KEY" in r.output
    r = CliRunner().invoke(app, ["serve", "scorer", "--judge", "bogus"])
    assert r.exit_code == 2 and "valid:" in r.output


def test_every_recipe_has_a_packaged_preset_that_loads():
    from safegrpo.cli import _default_demo_config, _load
    from safegrpo.recipes.base import recipe_names

    for recipe in recipe_names():
        path = _default_demo_config(recipe)
        assert (
            path is not None
            and path.parent.name == "configs"
            and path.parent.parent.name == "safegrpo"
        ), recipe
        _load(recipe, path, None)  # every preset parses into its recipe's config


@pytest.mark.parametrize(
    "cmd, field",
    [
        (
            ["train", "moderation", "-s", "base_model=/no/such/model"],
            "base_model: /no/such/model does not exist",
        ),
        (
            ["train", "moderation", "-s", "base_model=package:no_such_pkg"],
            "base_model: package:no_such_pkg is not installed (pip install --no-deps no-such-pkg)",
        ),
        (
            ["train", "recommender", "-s", "data.catalog=./no_catalog.jsonl"],
            "data.catalog: ./no_catalog.jsonl",
        ),
        (
            ["demo", "diffusion", "-s", "policy.model=/no/pipe"],
            "policy.model: /no/pipe does not exist",
        ),
    ],
)
def test_missing_model_or_data_paths_fail_before_training(cmd, field, tmp_path):
    r = CliRunner().invoke(app, [*cmd, "-s", f"out_dir={tmp_path}"])
    assert r.exit_code == 2 and field in " ".join(r.output.replace("│", " ").split()), r.output
    assert not any(tmp_path.iterdir())  # nothing was built or trained


def test_set_trainer_fields_are_honoured_and_recipe_fields_refused(tmp_path, monkeypatch):
    import safegrpo.recipes.moderation.pipeline as rec

    seen = {}

    class Capture:
        def __init__(self, policy, task, cfg):
            seen["grpo"] = cfg

        def train(self):
            return []

    monkeypatch.setattr(rec, "GRPOTrainer", Capture)
    monkeypatch.setattr(
        rec, "sft_train", lambda pol, pairs, cfg, eval_fn=None: seen.setdefault("sft", cfg)
    )
    cfg = load_config(ModerationRecipeConfig, None, [*SMOKE, f"out_dir={tmp_path}", "grpo.seed=7",
                                                     f"sft.out_dir={tmp_path / 'mysft'}", "seed=3"])
    policy = rec.load_defender(cfg, rec.prepare_base(cfg))
    rec.run_sft(cfg, policy)
    rec.run_grpo(cfg, policy, reward=None)
    assert seen["grpo"].seed == 7 and seen["grpo"].out_dir == str(tmp_path / "grpo")
    assert seen["sft"].seed == 3 and seen["sft"].out_dir == str(tmp_path / "mysft")
    r = CliRunner().invoke(app, ["config", "-s", "policy.model=/x"])
    assert r.exit_code == 2 and "set base_model instead" in " ".join(
        r.output.replace("│", " ").split()
    )


def test_unusable_checkpoint_is_one_line_and_exit_1(tmp_path, monkeypatch, minilm):
    import safegrpo.recipes.moderation.pipeline as rec

    real = rec.build_reward
    monkeypatch.setattr(rec, "build_reward", lambda cfg, embedder=None: real(cfg, embedder=minilm))
    ck = tmp_path / "grpo" / "checkpoints" / "step_000001"
    ck.mkdir(parents=True)
    (ck / "trainer_state.json").write_text("{not json")
    (ck.parent / "latest").write_text("step_000001")
    r = CliRunner().invoke(app, ["train", "moderation", "--resume", "-s", f"out_dir={tmp_path}",
                                 *[f"-s{x}" for x in SMOKE]])
    assert r.exit_code == 1, r.output
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in r.output


def test_demo_console_says_in_one_line_when_grpo_is_not_below_the_judge_curve():
    from rich.console import Console

    from safegrpo.eval.judge_curve import curve_report, not_below_line
    from safegrpo.recipes.moderation.demo import TINY_NOTE, render_summary

    # the tiny demo: judge threshold 0.086 / 0.397, GRPO pass-through 0.270 at 0.414
    scores = [{"split": "handwritten", "label": lab, "p_safe": p} for lab, p in
              [("unsafe", 0.1), ("unsafe", 0.2), ("safe", 0.3), ("safe", 0.9)]]
    table = [{"split": "handwritten", "method": "grpo", "tier": "all",
              "benign_over_refusal": 0.414, "strict_pass_through": 0.270}]
    note = not_below_line(curve_report(scores, table), "grpo", TINY_NOTE)
    console = Console(record=True, width=400)
    console.print(render_summary({"table": table, "curve_note": note}))
    lines = console.export_text().splitlines()
    said = [x for x in lines if "not below the embedded judge's operating curve" in x]
    assert len(said) == 1 and "SmolLM2 preset" in said[0]
    console = Console(record=True, width=400)
    console.print(render_summary({"table": table, "curve_note": None}))
    assert "operating curve" not in console.export_text()
