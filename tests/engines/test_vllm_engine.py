"""The vLLM engine (colocate) samples from the *current* policy: its greedy tokens equal the
trainer's HF greedy tokens for the same fp32 weights, before and after an update, and differ
between the two. Runs where vLLM is installed (`bash scripts/install_vllm.sh`; CI runs this file
in that venv); elsewhere it is skipped with that reason."""

import pytest
import torch

from tests.engines.conftest import PROMPTS, lora_policy, perturb_adapter

vllm = pytest.importorskip(
    "vllm", reason="vLLM is not installed in this env (bash scripts/install_vllm.sh; CI runs "
    "tests/engines in .venv-vllm)")


@pytest.fixture(scope="module")
def pair(peaked_lm_path):
    from safegrpo.policies.engines import EngineConfig

    ref = lora_policy(peaked_lm_path)
    eng = lora_policy(peaked_lm_path, EngineConfig(name="vllm"))
    yield ref, eng
    eng.close()


def greedy(policy):
    return policy.generate(PROMPTS, 1, seed=0, greedy=True)[2:]


def same_lora(dst, src) -> None:
    with torch.no_grad():
        for (_, p), (_, q) in zip(dst.model.named_parameters(), src.model.named_parameters(),
                                  strict=True):
            p.copy_(q)
    dst.weights_changed()


def test_greedy_matches_hf_and_follows_updates(pair):
    ref, eng = pair
    before_ref, before_eng = greedy(ref), greedy(eng)
    assert torch.equal(before_ref[0], before_eng[0]) and torch.equal(before_ref[1], before_eng[1])
    perturb_adapter(ref, seed=3)
    same_lora(eng, ref)
    after_ref, after_eng = greedy(ref), greedy(eng)
    assert torch.equal(after_ref[0], after_eng[0]) and torch.equal(after_ref[1], after_eng[1])
    assert not torch.equal(before_eng[0], after_eng[0])  # the engine saw the update


def test_sampling_is_seeded_and_reports_logprobs_close_to_trainer(pair):
    _, eng = pair
    a = eng.generate(PROMPTS, 4, seed=5, logprobs=True)
    b = eng.generate(PROMPTS, 4, seed=5, logprobs=True)
    assert torch.equal(a[2], b[2])
    assert a[2].shape[0] == len(PROMPTS) * 4
    trainer_lp, _ = eng.logprobs(*a[:4])
    mask = a[3].bool()
    assert float((trainer_lp - a[4]).abs()[mask].mean()) < 1e-3  # fp32 engine vs fp32 trainer


def test_stop_string_ends_the_completion(peaked_lm_path):
    from safegrpo.policies.engines import EngineConfig

    ref = lora_policy(peaked_lm_path, EngineConfig(stop=("a",)))
    eng = lora_policy(peaked_lm_path, EngineConfig(name="vllm", stop=("a",)))
    try:
        r, e = ref.generate(PROMPTS, 1, seed=0, greedy=True), eng.generate(PROMPTS, 1, seed=0,
                                                                            greedy=True)
        assert torch.equal(r[2], e[2]) and torch.equal(r[3], e[3])
    finally:
        eng.close()


def test_full_weight_policy_reloads_every_weight(peaked_lm_path):
    """lora.r = 0: an update moves every weight; the engine reloads them all (base_version)."""
    from safegrpo.policies.engines import EngineConfig
    from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig
    from safegrpo.policies.prompting import PromptFormat

    def make(engine):
        return LMPolicy(LMPolicyConfig(model=peaked_lm_path, lora=LoRAConfig(r=0),
                                       max_new_tokens=12, prompt=PromptFormat(chat="off"),
                                       engine=engine))

    ref, eng = make(EngineConfig()), make(EngineConfig(name="vllm"))
    try:
        before = greedy(eng)
        for pol in (ref, eng):
            g = torch.Generator().manual_seed(9)
            with torch.no_grad():
                for p in pol.model.parameters():
                    p.add_(torch.randn(p.shape, generator=g) * 0.5)
            pol.weights_changed(base=True)
        after_ref, after_eng = greedy(ref), greedy(eng)
        assert torch.equal(after_ref[0], after_eng[0]) and torch.equal(after_ref[1], after_eng[1])
        assert not torch.equal(before[0], after_eng[0])
    finally:
        eng.close()


def test_lora_request_sync_follows_adapter_and_base(peaked_lm_path):
    """lora_sync: request. Each update writes the adapter and samples through a new LoRARequest
    id; a base move (an SFT merge underneath) reloads the base. Greedy tokens equal HF's after
    each change and move with it."""
    from safegrpo.policies.engines import EngineConfig

    ref = lora_policy(peaked_lm_path)
    eng = lora_policy(peaked_lm_path, EngineConfig(name="vllm", lora_sync="request"))
    try:
        seen = [greedy(eng)]
        assert torch.equal(seen[0][0], greedy(ref)[0])
        for seed in (3, 4):
            perturb_adapter(ref, seed=seed)
            same_lora(eng, ref)
            want, got = greedy(ref), greedy(eng)
            assert torch.equal(want[0], got[0]) and torch.equal(want[1], got[1])
            seen.append(got)
        assert eng.engine.lora.lora_int_id == 3  # the start, then one id per update
        assert [p.name for p in eng.engine.lora_dir.iterdir()] == ["v3"]  # old files dropped
        for pol in (ref, eng):  # the weights under the adapter move
            base = pol.model.get_base_model().model.layers[0].mlp.down_proj
            with torch.no_grad():
                getattr(base, "base_layer", base).weight.mul_(-1.0)
            pol.weights_changed(base=True)
        want, got = greedy(ref), greedy(eng)
        assert torch.equal(want[0], got[0]) and torch.equal(want[1], got[1])
        seen.append(got)
        assert len({tuple(s[0].flatten().tolist()) for s in seen}) == len(seen)
    finally:
        eng.close()


@pytest.mark.parametrize("lora_sync", ["reload", "request"])
def test_reference_context_samples_the_weights_under_the_adapter(peaked_lm_path, lora_sync):
    """Inside policy.reference() (adapter disabled) vLLM samples what HF samples there: reload
    mode reloads the base linears, request mode sends no LoRARequest; after it, the adapter is
    back."""
    from safegrpo.policies.engines import EngineConfig

    ref = lora_policy(peaked_lm_path)
    eng = lora_policy(peaked_lm_path, EngineConfig(name="vllm", lora_sync=lora_sync))
    try:
        perturb_adapter(ref, seed=3)
        same_lora(eng, ref)
        on = greedy(eng)
        with ref.reference():
            want = greedy(ref)
        with eng.reference():
            got = greedy(eng)
        assert torch.equal(want[0], got[0]) and not torch.equal(got[0], on[0])
        assert torch.equal(greedy(eng)[0], on[0])
    finally:
        eng.close()
