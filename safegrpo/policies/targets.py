"""Targets a red-team attacker talks to: ``respond(prompts) -> responses``.

- ``LMTarget``: a frozen causal LM (hub id or path) behind a template, greedy decoding; the
  model's chat template wraps it when the tokenizer has one.
- ``DefenderTarget``: the moderation arena's defender. Its "output" is what would reach the image
  generator: the prompt itself when allowed, the rewrite when transformed, nothing when rejected
  or unparseable; the parsed decision is kept for self-play rewards.
"""

from __future__ import annotations

from safegrpo.envs.moderation.models import parse_action
from safegrpo.policies.inference import load_for_inference, saved_format
from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig


class LMTarget:
    def __init__(self, model: str | LMPolicy, template: str = "User: {prompt}\nAssistant:",
                 max_new_tokens: int = 32, device: str = "cpu", batch_size: int = 64):
        if "{prompt}" not in template:
            raise ValueError("target template must contain {prompt}")
        if isinstance(model, LMPolicy):
            self.policy = model
            self.policy.model.eval().requires_grad_(False)
        else:
            self.policy = frozen_policy(model, max_new_tokens, device)
        self.template, self.batch_size = template, batch_size

    def respond(self, prompts: list[str]) -> list[str]:
        return self.policy.complete([self.template.format(prompt=p) for p in prompts], greedy=True,
                                    batch_size=self.batch_size)


class DefenderTarget:
    def __init__(self, defender: LMPolicy, template: str | None = None):
        """``template`` None = the user template the defender was trained with."""
        self.defender, self.template = defender, template or defender.cfg.prompt.template

    @classmethod
    def from_path(cls, model: str, fallback_template: str, max_new_tokens: int = 48,
                  device: str = "cpu") -> DefenderTarget:
        """A saved defender, prompted exactly as it was trained (its recorded prompt format);
        ``fallback_template`` only for folders saved before formats were recorded."""
        policy = frozen_policy(model, max_new_tokens, device)
        recorded = saved_format(model) is not None
        return cls(policy, None if recorded else fallback_template)

    def decide(self, prompts: list[str]) -> tuple[list[str], list[str]]:
        """-> (decision per prompt: allow|transform|reject|invalid, text passed to the
        generator)."""
        outs = self.defender.complete([self.template.format(prompt=p) for p in prompts],
                                      greedy=True)
        decisions, passed = [], []
        for p, o in zip(prompts, outs, strict=True):
            action = parse_action(o)[0]
            if action is None:
                decisions.append("invalid")
                passed.append("")
            else:
                decisions.append(action.decision)
                passed.append(p if action.decision == "allow" else (action.rewrite or "")
                              if action.decision == "transform" else "")
        return decisions, passed

    def respond(self, prompts: list[str]) -> list[str]:
        return self.decide(prompts)[1]


def frozen_policy(model: str, max_new_tokens: int, device: str = "cpu") -> LMPolicy:
    """``model`` (hub id or path) frozen for generation. A saved policy folder reloads as trained
    (merged adapters, final adapter, prompt format); anything else loads plain."""
    if saved_format(model) is not None:
        return load_for_inference(model, max_new_tokens=max_new_tokens, device=device)
    policy = LMPolicy(LMPolicyConfig(model=model, lora=LoRAConfig(r=0),
                                     max_new_tokens=max_new_tokens), device=device)
    policy.model.eval().requires_grad_(False)
    return policy
