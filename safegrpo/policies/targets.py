"""Targets a red-team attacker talks to: ``respond(prompts) -> responses``.

- ``LMTarget``: a frozen causal LM (hub id or path) behind a chat-style template, greedy decoding.
- ``DefenderTarget``: the moderation arena's defender. Its "output" is what would reach the image
  generator: the prompt itself when allowed, the rewrite when transformed, nothing when rejected
  or unparseable; the parsed decision is kept for self-play rewards.
"""

from __future__ import annotations

from safegrpo.envs.moderation.models import parse_action
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
    def __init__(self, defender: LMPolicy, template: str):
        self.defender, self.template = defender, template

    @classmethod
    def from_path(cls, model: str, template: str, max_new_tokens: int = 48, device: str = "cpu") -> DefenderTarget:
        return cls(frozen_policy(model, max_new_tokens, device), template)

    def decide(self, prompts: list[str]) -> tuple[list[str], list[str]]:
        """-> (decision per prompt: allow|transform|reject|invalid, text passed to the generator)."""
        outs = self.defender.complete([self.template.format(prompt=p) for p in prompts], greedy=True)
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
    """``model`` (hub id or path) with every weight frozen and no adapter, for generation only."""
    policy = LMPolicy(LMPolicyConfig(model=model, lora=LoRAConfig(r=0), max_new_tokens=max_new_tokens),
                      device=device)
    policy.model.eval().requires_grad_(False)
    return policy
