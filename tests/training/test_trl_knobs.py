"""TRL's knobs: LR schedule with warmup, gradient checkpointing, mask_truncated_completions,
top_entropy_quantile, per-step completion samples, and TRL's field names as aliases."""

import json
import shutil

import pytest
import torch

from safegrpo.core.config import ConfigError, from_dict, load_config, to_dict
from safegrpo.losses import entropy_mask, grpo_loss, truncated_rows
from safegrpo.training.grpo_config import GRPOConfig
from tests.training.test_grpo import make, trainable


def test_trl_names_are_aliases():
    cfg = load_config(GRPOConfig, None, [
        "num_iterations=2", "epsilon_high=0.28", "loss_type=dapo", "importance_sampling_level="
        "sequence", "scale_rewards=false", "beta=0.04", "num_generations=4",
        "learning_rate=3e-6", "lr_scheduler_type=cosine"])
    assert (cfg.epochs, cfg.clip_eps_high, cfg.loss_agg, cfg.ratio_level, cfg.adv_scale,
            cfg.beta, cfg.group_size, cfg.lr, cfg.lr_scheduler) == (
        2, 0.28, "dapo", "sequence", "none", 0.04, 4, 3e-6, "cosine")
    assert from_dict(GRPOConfig, to_dict(cfg)) == cfg  # saved under this library's names
    eps = from_dict(GRPOConfig, {"epsilon": 0.3})
    assert (eps.clip_eps_low, eps.clip_eps_high) == (0.3, 0.3)  # TRL: both unless epsilon_high
    assert from_dict(GRPOConfig, {"scale_rewards": "batch"}).adv_scale == "batch"


def test_trl_names_in_a_recipe_section_and_flat():
    from safegrpo.recipes.moderation.pipeline import ModerationRecipeConfig

    assert load_config(ModerationRecipeConfig, None, ["grpo.num_iterations=3"]).grpo.epochs == 3
    assert load_config(ModerationRecipeConfig, None, ["epsilon_high=0.3"]).grpo.clip_eps_high \
        == 0.3


def test_trl_names_elsewhere_are_named_in_the_error():
    with pytest.raises(ConfigError, match=r"grpo\.max_completion_length is the policy "
                                          r"section's max_new_tokens"):
        from safegrpo.recipes.moderation.pipeline import ModerationRecipeConfig

        load_config(ModerationRecipeConfig, None, ["grpo.max_completion_length=64"])
    with pytest.raises(ConfigError, match=r"num_iterations \(an alias of epochs\) = 2 conflicts "
                                          r"with epochs = 3"):
        from_dict(GRPOConfig, {"num_iterations": 2, "epochs": 3})
    with pytest.raises(ConfigError, match="lr_scheduler: unknown schedule 'cosin'; valid: .*"
                                          "cosine"):
        load_config(GRPOConfig, None, ["lr_scheduler=cosin"])


def test_linear_schedule_with_warmup_and_exact_resume(tiny_lm_path, tmp_path):
    kw = dict(steps=4, lr_scheduler="linear", warmup_steps=2, save_every=1, keep_checkpoints=5)
    pol_a, tr_a = make(tiny_lm_path, tmp_path / "a", **kw)
    tr_a.train()
    assert [h["train/lr"] for h in tr_a.history] == pytest.approx([0, 5e-3, 1e-2, 5e-3])
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    for late in ("step_000003", "step_000004"):
        shutil.rmtree(tmp_path / "b" / "checkpoints" / late)
    pol_c, tr_c = make(tiny_lm_path, tmp_path / "b", **kw)
    assert tr_c.resume() == 2
    tr_c.train()
    assert [h["train/lr"] for h in tr_c.history] == pytest.approx([0, 5e-3, 1e-2, 5e-3])
    a, c = trainable(pol_a), trainable(pol_c)
    for k in a:
        torch.testing.assert_close(a[k], c[k], atol=1e-6, rtol=1e-6)


def test_gradient_checkpointing_gives_the_same_update(tiny_lm_path, tmp_path):
    pol_a, tr_a = make(tiny_lm_path, tmp_path / "a", steps=1)
    object.__setattr__(pol_a.cfg, "shared_prompt_logprobs", False)  # checkpointing runs it plain
    pol_b, tr_b = make(tiny_lm_path, tmp_path / "b", steps=1, gradient_checkpointing=True)
    on = [getattr(m, "gradient_checkpointing", False) for m in pol_b.model.modules()]
    off = [getattr(m, "gradient_checkpointing", False) for m in pol_a.model.modules()]
    assert any(on) and not any(off)
    tr_a.train()
    tr_b.train()
    a, b = trainable(pol_a), trainable(pol_b)
    assert any((a[k] - trainable(make(tiny_lm_path, tmp_path / "c")[0])[k]).abs().max() > 0
               for k in a)  # the step changed the weights
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)


def test_truncated_completions_leave_the_loss(tiny_lm_path, tmp_path):
    _, tr_on = make(tiny_lm_path, tmp_path / "on", steps=1, mask_truncated_completions=True)
    _, tr_off = make(tiny_lm_path, tmp_path / "off", steps=1)
    on, off = tr_on.train()[-1], tr_off.train()[-1]
    assert on["policy/truncated_frac"] == off["policy/truncated_frac"] > 0.5  # 8-token budget
    assert off["rows_trained"] > on["rows_trained"]
    assert on["rows_trained"] <= round((1 - on["policy/truncated_frac"]) * 8)


def test_entropy_mask_keeps_the_top_quantile():
    ent = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    # masked entropies 1..6: the 0.5 quantile is 3.5, so 4, 5 and 6 stay (padding never does)
    assert entropy_mask(ent, mask, 0.5).tolist() == [[0, 0, 0, 1], [1, 1, 0, 0]]
    assert entropy_mask(ent, mask, 1.0).tolist() == mask.float().tolist()


def test_token_weights_scale_the_policy_term_not_the_denominator():
    logp = torch.zeros(1, 4, requires_grad=True)
    adv, mask = torch.tensor([2.0]), torch.ones(1, 4)
    weights = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    out = grpo_loss(logp, logp.detach(), adv, mask, agg="bnpo", token_weights=weights)
    assert float(out.loss.detach()) == pytest.approx(-2.0 / 4)  # one token's -r*A over all 4 tokens


def test_top_entropy_quantile_changes_the_update(tiny_lm_path, tmp_path):
    pol_a, tr_a = make(tiny_lm_path, tmp_path / "a", steps=1)
    pol_b, tr_b = make(tiny_lm_path, tmp_path / "b", steps=1, top_entropy_quantile=0.2)
    tr_a.train()
    tr_b.train()
    a, b = trainable(pol_a), trainable(pol_b)
    assert any((a[k] - b[k]).abs().max() > 1e-6 for k in a)


def test_sample_completions_are_logged_per_step(tiny_lm_path, tmp_path):
    _, tr = make(tiny_lm_path, tmp_path, steps=2, log_completions=3)
    tr.train()
    rows = [json.loads(x) for x in (tmp_path / "completions.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 0, 0, 1, 1, 1]
    assert set(rows[0]) == {"step", "prompt", "completion", "reward", "components"}
    assert rows[0]["prompt"].startswith("Prompt: item 0") and "vowels" in rows[0]["components"]


def test_a_completion_that_ends_at_a_stop_string_is_not_truncated():
    """Engines cut a row after its stop string (no EOS): shorter than the budget, it ended. Before,
    every such row counted as cut, so mask_truncated_completions trained on nothing."""
    eos = 2
    ids = torch.tensor([[5, 6, 2, 0], [5, 6, 7, 0], [5, 6, 7, 8]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 1]])
    assert truncated_rows(ids, mask, eos).tolist() == [False, True, True]  # EOS only
    assert truncated_rows(ids, mask, eos, budget=4).tolist() == [False, False, True]
