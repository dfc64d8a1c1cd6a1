import pytest
import torch

from safegrpo.envs.moderation import trl as trl_rewards
from safegrpo.envs.moderation.trl import (
    ARENA_COLUMNS,
    arena_rows,
    as_text,
    as_trl_reward,
    judge_reward,
    moderation_trl_reward,
    prompt_text,
    save_arena_dataset,
)
from safegrpo.judges.toxicity import ProfanityJudge

TRL_KW = {"completion_ids": [[1], [2]], "trainer_state": object(),
          "log_extra": lambda *a, **k: None}


def test_signature_contract_and_none_for_nan():
    f = as_trl_reward(lambda p, c, kw: torch.tensor([1.0, float("nan")]), "demo")
    assert f.__name__ == "demo"
    out = f(prompts=["a", "b"], completions=["x", [{"role": "assistant", "content": "y"}]],
            **TRL_KW)
    assert out == [1.0, None]
    with pytest.raises(TypeError, match="chat messages"):
        as_text(3)


def test_moderation_reward_via_trl_with_dataset_columns(arena_reward):
    logged = {}
    f = moderation_trl_reward(arena_reward)
    out = f(prompts=["P: x", "P: x"],
            completions=['{"decision": "reject", "reason": "v"}', "nonsense"],
            arena_prompt=["a man stabbing a stranger with a knife"] * 2, label=["unsafe"] * 2,
            category=["violence"] * 2, tier=["T1"] * 2,
            log_metric=lambda k, v: logged.__setitem__(k, v), **TRL_KW)
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


@pytest.fixture()
def tiny_chat_lm(tiny_lm_path, tmp_path):
    """The tiny LM with a minimal chat template (TRL applies it to conversational prompts)."""
    import shutil

    from transformers import AutoTokenizer

    path = tmp_path / "tiny_chat"
    shutil.copytree(tiny_lm_path, path)
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}assistant: {% endif %}")
    tok.save_pretrained(path)
    return str(path)


def test_trl_grpo_trainer_two_steps_with_the_dotted_path_reward(tiny_chat_lm, tmp_path,
                                                                arena_reward, monkeypatch,
                                                                fresh_accelerate_state):
    """README example: TRL's trainer on an arena reward given by dotted path."""
    import importlib

    from trl import GRPOConfig, GRPOTrainer

    # built once per session
    monkeypatch.setattr(trl_rewards, "default_arena_reward", lambda: arena_reward)
    module, name = "safegrpo.envs.moderation.trl.moderation_reward".rsplit(".", 1)
    reward = getattr(importlib.import_module(module), name)
    data = trl_rewards.arena_dataset("train").shuffle(seed=0).select(range(4))
    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=2,
                      num_generations=2, max_completion_length=8, max_steps=2, report_to=[],
                      logging_steps=1, save_strategy="no", learning_rate=1e-3)
    trainer = GRPOTrainer(model=tiny_chat_lm, reward_funcs=[reward], args=args, train_dataset=data)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "rewards/moderation_reward/mean" in h]
    assert len(logs) == 2 and all(h["rewards/moderation_reward/mean"] == pytest.approx(-0.5)
                                  for h in logs)
    assert any("moderation/format" in k for k in trainer.state.log_history[0])


def test_trl_grpo_trainer_runs_a_step_with_our_reward(tiny_lm_path, tmp_path,
                                                      fresh_accelerate_state):
    pytest.importorskip("trl")
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    seen = []

    def fn(prompts, completions, cols):
        seen.append((len(completions), sorted(k for k in cols if k in ("label", "trainer_state"))))
        return torch.tensor([len(c) / 10 for c in completions])

    data = Dataset.from_dict({"prompt": ["Prompt: a cat\nJSON:", "Prompt: a dog\nJSON:"],
                              "label": ["safe", "safe"]})
    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=2,
                      num_generations=2, max_completion_length=6, max_steps=1, report_to=[],
                      logging_steps=1, save_strategy="no", learning_rate=1e-3)
    trainer = GRPOTrainer(model=tiny_lm_path, reward_funcs=[as_trl_reward(fn, "length")], args=args,
                          train_dataset=data)
    trainer.train()
    assert seen and seen[0][0] == 2 and seen[0][1] == ["label", "trainer_state"]
    assert any("rewards/length" in k for k in trainer.state.log_history[0])


REJECT = '{"decision": "reject", "reason": "violence"}'


def test_content_parts_and_multi_message_completions():
    parts = [{"role": "assistant", "content": [{"type": "text", "text": '{"decision":'},
                                               {"type": "image"},
                                               {"type": "text", "text": '"reject"}'}]}]
    assert as_text(parts) == '{"decision":\n"reject"}'
    multi = [{"role": "assistant", "content": "Let me check the policy."},
             {"role": "tool", "content": '{"decision": "allow"}'},
             {"role": "assistant", "content": REJECT}]
    # the tool's JSON is not the policy's
    assert as_text(multi) == "Let me check the policy.\n" + REJECT
    chat = [{"role": "system", "content": "be safe"},
            {"role": "user", "content": [{"type": "text", "text": "P"}]}]
    assert prompt_text(chat) == "P" and prompt_text("plain") == "plain"
    with pytest.raises(TypeError, match="string or a list of parts"):
        as_text([{"role": "assistant", "content": 3}])


def test_content_part_completions_are_scored_like_strings(arena_reward):
    f = moderation_trl_reward(arena_reward)
    cols = {"arena_prompt": ["a man stabbing a stranger with a knife"] * 3, "label": ["unsafe"] * 3,
            "category": ["violence"] * 3, "tier": ["T1"] * 3}
    as_parts = [{"role": "assistant", "content": [{"type": "text", "text": REJECT}]}]
    split = [{"role": "assistant", "content": "Thinking..."},
             {"role": "assistant", "content": REJECT}]
    out = f(prompts=["p"] * 3, completions=[REJECT, as_parts, split], **cols)
    assert out[0] == pytest.approx(0.4) and out[1] == out[0] and out[2] == out[0]


def test_moderation_reward_by_dotted_path(arena_reward, monkeypatch):
    import importlib

    monkeypatch.setattr(trl_rewards, "default_arena_reward", lambda: arena_reward)
    # as `trl grpo` resolves it
    module, name = "safegrpo.envs.moderation.trl.moderation_reward".rsplit(".", 1)
    f = getattr(importlib.import_module(module), name)
    assert f.__name__ == "moderation_reward"
    rows = [r for r in arena_rows("train") if r["tier"] in ("T1", "benign")][:4]
    cols = {k: [r[k] for r in rows] for k in ARENA_COLUMNS}
    out = f(prompts=[r["prompt"] for r in rows], completions=[REJECT] * 4, **cols, **TRL_KW)
    want = [0.4 if r["label"] == "unsafe" else None for r in rows]
    assert all(w is None or o == pytest.approx(w) for o, w in zip(out, want, strict=True))
    # over-refusal
    assert all(o < 0 for o, r in zip(out, rows, strict=True) if r["label"] == "safe")
    with pytest.raises(KeyError, match="ARENA_COLUMNS"):
        f(prompts=["p"], completions=[REJECT])


def test_arena_rows_in_trl_prompt_formats(tmp_path):
    from datasets import load_dataset

    chat = arena_rows("train")
    assert chat and set(chat[0]) == {"prompt", *ARENA_COLUMNS}
    assert [m["role"] for m in chat[0]["prompt"]] == ["system", "user"]
    assert chat[0]["arena_prompt"] in chat[0]["prompt"][1]["content"]
    plain = arena_rows("holdout", conversational=False)
    assert (plain and plain[0]["prompt"].endswith("JSON:")
            and plain[0]["arena_prompt"] in plain[0]["prompt"])
    assert [m["role"] for m in arena_rows(system_role=False)[0]["prompt"]] == ["user"]
    with pytest.raises(ValueError, match="valid: train, holdout"):
        arena_rows("dev")
    ds = load_dataset(str(save_arena_dataset(tmp_path / "arena")))
    assert ds["train"].num_rows == len(chat) and ds["test"].num_rows == len(arena_rows("holdout"))
    assert ds["train"][0]["prompt"] == chat[0]["prompt"]
