"""Targets a red-team attacker talks to: ``respond(prompts) -> responses``.

- ``LMTarget``: a frozen causal LM (hub id or path) behind a template, greedy decoding; the
  model's chat template wraps it when the tokenizer has one.
- ``DefenderTarget``: the moderation arena's defender. Its "output" is what would reach the image
  generator: the prompt itself when allowed, the rewrite when transformed, nothing when rejected
  or unparseable; the parsed decision is kept for self-play rewards.
"""

from __future__ import annotations

from dataclasses import replace

from safegrpo.policies.engines import EngineConfig
from safegrpo.policies.inference import load_for_inference, saved_format
from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig


class LMTarget:
    def __init__(self, model: str | LMPolicy, template: str = "User: {prompt}\nAssistant:",
                 max_new_tokens: int = 32, device: str = "cpu", batch_size: int = 64,
                 engine: EngineConfig | None = None):
        if "{prompt}" not in template:
            raise ValueError("target template must contain {prompt}")
        if isinstance(model, LMPolicy):
            self.policy = model
            self.policy.model.eval().requires_grad_(False)
        else:
            self.policy = frozen_policy(model, max_new_tokens, device)
        if engine is not None:  # the engine is built on first use, so it can still be chosen
            self.policy.cfg = replace(self.policy.cfg, engine=engine)
        self.template, self.batch_size = template, batch_size

    def respond(self, prompts: list[str]) -> list[str]:
        return self.policy.complete([self.template.format(prompt=p) for p in prompts], greedy=True,
                                    batch_size=self.batch_size)


def frozen_policy(model: str, max_new_tokens: int, device: str = "cpu") -> LMPolicy:
    """``model`` (hub id or path) frozen for generation. A saved policy folder reloads as trained
    (merged adapters, final adapter, prompt format); anything else loads plain."""
    if saved_format(model) is not None:
        return load_for_inference(model, max_new_tokens=max_new_tokens, device=device)
    policy = LMPolicy(LMPolicyConfig(model=model, lora=LoRAConfig(r=0),
                                     max_new_tokens=max_new_tokens), device=device)
    policy.model.eval().requires_grad_(False)
    return policy
