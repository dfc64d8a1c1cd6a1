import pytest
import torch

from tests.conftest import TINY_CORPUS


@pytest.fixture(scope="session")
def peaked_lm_path(tmp_path_factory):
    """A tiny Llama whose next-token distributions are peaked (weights scaled up), so greedy
    decoding has no near-ties and two engines in fp32 must pick the same tokens. head_dim 64:
    vLLM's CPU attention kernels need a supported head size."""
    from transformers import AutoModelForCausalLM

    from safegrpo.policies.tiny import build_tiny_lm

    path = build_tiny_lm(tmp_path_factory.mktemp("peaked_lm"), TINY_CORPUS, vocab_size=300,
                         hidden=128, layers=2, heads=2)
    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.mul_(8.0)
    model.save_pretrained(path)
    return str(path)


def lora_policy(path, engine=None, **kw):
    """An LMPolicy with a LoRA adapter on ``path`` (the engine given by name/options)."""
    from safegrpo.policies.engines import EngineConfig
    from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig
    from safegrpo.policies.prompting import PromptFormat

    cfg = LMPolicyConfig(model=path, lora=LoRAConfig(r=4, alpha=8), max_new_tokens=12,
                         prompt=PromptFormat(chat="off"), engine=engine or EngineConfig(), **kw)
    return LMPolicy(cfg)


def perturb_adapter(policy, seed: int = 1, scale: float = 2.0) -> None:
    """An 'optimizer step': random LoRA B weights (peft initialises B = 0), then tell the
    policy its weights moved."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * scale)
    policy.weights_changed()


PROMPTS = ["Prompt: a watercolor of a cat sleeping on a windowsill\nJSON:",
           "Prompt: a photo of a man stabbing a stranger\nJSON:",
           '{"decision": "allow", "reason":']
