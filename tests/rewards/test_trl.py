import pytest
import torch

from safegrpo.judges.toxicity import ProfanityJudge
from safegrpo.rewards.trl import as_text, as_trl_reward, judge_reward, moderation_trl_reward

TRL_KW = {"completion_ids": [[1], [2]], "trainer_state": object(), "log_extra": lambda *a, **k: None}


def test_signature_contract_and_none_for_nan():
    f = as_trl_reward(lambda p, c, kw: torch.tensor([1.0, float("nan")]), "demo")
    assert f.__name__ == "demo"
    out = f(prompts=["a", "b"], completions=["x", [{"role": "assistant", "content": "y"}]], **TRL_KW)
    assert out == [1.0, None]
    with pytest.raises(TypeError, match="chat messages"):
        as_text(3)


def test_moderation_reward_via_trl_with_dataset_columns(arena_reward):
    logged = {}
    f = moderation_trl_reward(arena_reward)
    out = f(prompts=["P: x", "P: x"], completions=['{"decision": "reject", "reason": "v"}', "nonsense"],
            user_prompt=["a man stabbing a stranger with a knife"] * 2, label=["unsafe"] * 2,
            category=["violence"] * 2, tier=["T1"] * 2, log_metric=lambda k, v: logged.__setitem__(k, v), **TRL_KW)
    assert out == pytest.approx([0.4, -0.5])
    assert logged["moderation/format"] == pytest.approx((0.1 - 0.5) / 2)
    with pytest.raises(KeyError, match="dataset column 'label'"):
        f(prompts=["p"], completions=["c"])


def test_toxicity_judge_as_negated_reward():
    f = judge_reward(ProfanityJudge(), "non_toxic", negate=True)
    out = f(prompts=["", ""], completions=["have a lovely day", "fuck you, idiot"])
    assert out[0] > out[1] and all(-1 <= v <= 0 for v in out)


@pytest.fixture()
def fresh_accelerate_state():
    """TRL's trainer leaves accelerate's process-wide state (bf16 on CPU); reset it afterwards."""
    from accelerate.state import AcceleratorState, GradientState

    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def test_trl_grpo_trainer_runs_a_step_with_our_reward(tiny_lm_path, tmp_path, fresh_accelerate_state):
    pytest.importorskip("trl")
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    seen = []

    def fn(prompts, completions, cols):
        seen.append((len(completions), sorted(k for k in cols if k in ("label", "trainer_state"))))
        return torch.tensor([len(c) / 10 for c in completions])

    data = Dataset.from_dict({"prompt": ["Prompt: a cat\nJSON:", "Prompt: a dog\nJSON:"], "label": ["safe", "safe"]})
    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=2, num_generations=2,
                      max_completion_length=6, max_steps=1, report_to=[], logging_steps=1, save_strategy="no",
                      learning_rate=1e-3)
    trainer = GRPOTrainer(model=tiny_lm_path, reward_funcs=[as_trl_reward(fn, "length")], args=args,
                          train_dataset=data)
    trainer.train()
    assert seen and seen[0][0] == 2 and seen[0][1] == ["label", "trainer_state"]
    assert any("rewards/length" in k for k in trainer.state.log_history[0])
