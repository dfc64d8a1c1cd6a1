"""The hf rollout engine: the default path is today's exact generate call; a merged or bf16
sampling copy follows every update; stop strings end completions; the engine-trainer mismatch and
truncated importance sampling are computed as stated."""

import pytest
import torch

from safegrpo.losses.importance import engine_correction
from safegrpo.policies.engines import EngineConfig
from safegrpo.policies.engines.base import truncate_at_stop
from safegrpo.policies.engines.merged import merged_state
from tests.engines.conftest import PROMPTS, lora_policy, perturb_adapter


def test_default_path_is_the_plain_generate_call(peaked_lm_path):
    pol = lora_policy(peaked_lm_path)
    perturb_adapter(pol, scale=0.3)
    pids, pmask, comp, cmask = pol.generate(PROMPTS, 3, seed=7)
    ids, mask = pol.encode_prompts(PROMPTS)
    torch.manual_seed(7)
    out = pol.model.generate(input_ids=ids.repeat_interleave(3, 0),
                             attention_mask=mask.repeat_interleave(3, 0), do_sample=True,
                             max_new_tokens=12, top_k=0, top_p=1.0, temperature=1.0,
                             pad_token_id=pol.tokenizer.pad_token_id,
                             eos_token_id=pol.tokenizer.eos_token_id)[:, ids.shape[1]:]
    width = comp.shape[1]
    assert torch.equal(comp * cmask, (out[:, :width] * cmask))
    assert torch.equal(pids, ids.repeat_interleave(3, 0))


@pytest.mark.parametrize("engine", [EngineConfig(merge_lora=True),
                                    EngineConfig(gen_dtype="float32")])
def test_merged_copy_follows_updates(peaked_lm_path, engine):
    own = lora_policy(peaked_lm_path)
    eng = lora_policy(peaked_lm_path, engine)
    g0 = eng.generate(PROMPTS, 1, seed=0, greedy=True)[2]
    assert torch.equal(g0, own.generate(PROMPTS, 1, seed=0, greedy=True)[2])
    perturb_adapter(own, seed=4)
    perturb_adapter(eng, seed=4)
    g1 = eng.generate(PROMPTS, 1, seed=0, greedy=True)[2]
    assert torch.equal(g1, own.generate(PROMPTS, 1, seed=0, greedy=True)[2])
    assert not torch.equal(g0, g1)


@pytest.mark.parametrize("engine", [EngineConfig(merge_lora=True),
                                    EngineConfig(gen_dtype="float32")])
def test_merged_copy_samples_the_reference_inside_reference(peaked_lm_path, engine):
    """policy.reference() disables the adapter; a sampling copy must follow it both ways (the
    red-team evaluation's "before" attacker was the trained one while it did not)."""
    own = lora_policy(peaked_lm_path)
    eng = lora_policy(peaked_lm_path, engine)
    for pol in (own, eng):
        perturb_adapter(pol, seed=4)

    def greedy(pol):
        return pol.generate(PROMPTS, 1, seed=0, greedy=True)[2]

    trained = greedy(eng)  # the copy is now in sync with the adapter on
    with own.reference():
        want = greedy(own)
    with eng.reference():
        got = greedy(eng)
    assert torch.equal(got, want) and not torch.equal(got, trained)
    assert torch.equal(greedy(eng), trained)  # back on: the adapted weights again


def test_bf16_copy_holds_the_current_merged_weights(peaked_lm_path):
    pol = lora_policy(peaked_lm_path, EngineConfig(gen_dtype="bfloat16"))
    pol.generate(PROMPTS, 1, seed=0)
    perturb_adapter(pol, seed=2)
    pol.generate(PROMPTS, 1, seed=0)
    copy = pol.engine.copy.module
    want = merged_state(pol.model)
    for name, p in copy.state_dict().items():
        assert p.dtype == torch.bfloat16
        torch.testing.assert_close(p, want[name].to(torch.bfloat16), atol=0, rtol=0)
    # and the base weights under the adapter were never touched by the merge
    base = pol.model.get_base_model().model.layers[0].self_attn.q_proj.base_layer.weight
    lora = pol.model.get_base_model().model.layers[0].self_attn.q_proj
    assert not torch.equal(base, want["model.layers.0.self_attn.q_proj.weight"])
    assert torch.equal(lora.get_base_layer().weight, base)


def test_stop_strings_end_completions(peaked_lm_path):
    pol = lora_policy(peaked_lm_path, EngineConfig(stop=("a",)), temperature=2.0)
    _, _, comp, cmask = pol.generate(PROMPTS, 4, seed=1)
    tok = pol.tokenizer
    stopped = 0
    for row, m in zip(comp, cmask, strict=True):
        ids = row[m.bool()].tolist()
        text = tok.decode(ids)
        if "a" in text:
            stopped += 1
            assert "a" not in tok.decode(ids[:-1]) and text.count("a") >= 1
    assert stopped > 0


def test_truncate_at_stop_hand_computed():
    pieces = {1: "ab", 2: "c}", 3: "d", 9: "</s>"}

    def text(ids):
        return "".join(pieces[i] for i in ids)

    assert truncate_at_stop([1, 2, 3, 3], text, ("}",), 9) == [1, 2]
    assert truncate_at_stop([1, 9, 2, 3], text, ("}",), 9) == [1, 9]
    assert truncate_at_stop([1, 3, 3], text, ("}",), 9) == [1, 3, 3]
    assert truncate_at_stop([1, 2, 3], text, ("bc",), None) == [1, 2]  # spans two tokens


def test_engine_correction_hand_computed():
    trainer = torch.tensor([[-1.0, -2.0, -0.5]])
    engine = torch.tensor([[-1.5, -1.0, -9.0]])
    mask = torch.tensor([[1, 1, 0]])
    w, m = engine_correction(trainer, engine, mask, cap=1.5)
    # exp(0.5) = 1.6487 -> capped 1.5; exp(-1) = 0.3679; masked token 0
    torch.testing.assert_close(w, torch.tensor([[1.5, 0.36788, 0.0]]), atol=1e-4, rtol=0)
    assert m["engine/logp_abs_diff"] == pytest.approx(0.75)
    assert m["engine/is_truncated_frac"] == pytest.approx(0.5)
    assert engine_correction(trainer, engine, mask, cap=0)[0] is None
    assert engine_correction(trainer, None, mask, cap=2)[1] == {}


def test_token_weights_scale_the_policy_gradient():
    from safegrpo.losses import grpo_loss

    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    adv, mask = torch.tensor([1.0]), torch.ones(1, 2)
    grpo_loss(logp, logp.detach(), adv, mask, agg="dapo",
              token_weights=torch.tensor([[1.0, 0.0]])).loss.backward()
    assert logp.grad[0, 1] == 0 and logp.grad[0, 0] != 0


def test_unknown_engine_and_missing_vllm_fail_in_one_line(monkeypatch, peaked_lm_path):
    from safegrpo.policies.lm import LMPolicyConfig

    with pytest.raises(KeyError, match="valid: auto, hf, vllm"):
        LMPolicyConfig(model="x", engine=EngineConfig(name="sglang"))
    with pytest.raises(ValueError, match="engine.url must start with http"):
        EngineConfig(name="vllm", mode="server", url="localhost:8000")
    import importlib.util

    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n, *a: None if n == "vllm" else real_find(n, *a))
    with pytest.raises(ValueError, match="install_vllm.sh") as e:
        EngineConfig(name="vllm")  # at config load
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="policy.engine.python"):
        EngineConfig(name="vllm", mode="server")
    with pytest.raises(ValueError, match="no interpreter"):
        EngineConfig(name="vllm", mode="server", python="/nonexistent/python")
    monkeypatch.setattr(importlib.util, "find_spec", real_find)
    import builtins

    real = builtins.__import__

    def no_vllm(name, *a, **k):
        if name == "vllm" or name.startswith("vllm."):
            raise ImportError("No module named 'vllm'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_vllm)
    from safegrpo.policies.engines.vllm import import_vllm

    with pytest.raises(RuntimeError, match="install_vllm.sh") as e:
        import_vllm()  # what the colocate engine calls first
    assert "\n" not in str(e.value)


def test_grpo_logs_engine_mismatch_and_is_weights(peaked_lm_path, tmp_path):
    from safegrpo.training.grpo import GRPOConfig, GRPOTrainer
    from tests.training.fake_task import VowelTask

    pol = lora_policy(peaked_lm_path, EngineConfig(gen_dtype="bfloat16"))
    cfg = GRPOConfig(steps=2, prompts_per_step=2, group_size=4, minibatch_size=8, lr=1e-2,
                     out_dir=str(tmp_path), report_to="none", engine_is_cap=2.0)
    hist = GRPOTrainer(pol, VowelTask(), cfg).train()
    row = hist[-1]
    assert row["engine/logp_abs_diff"] > 0  # bf16 sampling vs fp32 trainer
    assert 0 < row["engine/is_weight_mean"] <= 2.0
    # synced before step 1, adapter on
    assert pol.engine.copy.seen == (pol.base_version, pol.version - 1, False)


def test_auto_settles_engine_and_dtype(monkeypatch):
    from safegrpo.policies.engines import base

    monkeypatch.setattr(base, "fast_bf16", lambda: True)
    got = base.resolve(EngineConfig(name="auto", gen_dtype="auto"), vllm_importable=False)
    assert (got.name, got.gen_dtype) == ("hf", "bfloat16")
    monkeypatch.setattr(base, "fast_bf16", lambda: False)
    got = base.resolve(EngineConfig(name="auto", gen_dtype="auto", mode="server",
                                    url="http://127.0.0.1:1"), vllm_importable=True)
    assert (got.name, got.gen_dtype) == ("vllm", "policy")
    assert "vllm, server" in base.describe(got)


def test_shared_prefill_samples_what_n_prefills_sample(peaked_lm_path):
    """One prefill per prompt, its cache copied to the group: the same greedy and seeded samples
    as n separate prefills (fp32, peaked tiny model), with the adapter moved."""
    plain = lora_policy(peaked_lm_path)
    shared = lora_policy(peaked_lm_path, EngineConfig(share_prefill=True))
    for pol in (plain, shared):
        perturb_adapter(pol, seed=3, scale=0.3)
    for greedy in (True, False):
        a = plain.generate(PROMPTS, 4, seed=11, greedy=greedy)
        b = shared.generate(PROMPTS, 4, seed=11, greedy=greedy)
        assert torch.equal(a[2] * a[3], b[2] * b[3]) and torch.equal(a[3], b[3])
    shapes = []
    hook = shared.model.get_base_model().register_forward_hook(
        lambda m, a, kw, o: shapes.append(tuple(kw["input_ids"].shape)), with_kwargs=True)
    shared.generate(PROMPTS, 4, seed=0)
    hook.remove()
    # one prefill over the 3 prompts, then only single-token steps over the 12 rows
    assert shapes[0][0] == 3 and shapes[0][1] > 1
    assert all(s == (12, 1) for s in shapes[1:]) and len(shapes) > 2
