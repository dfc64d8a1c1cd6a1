"""A trained defender used as a red-team / self-play target: allow -> the prompt, transform ->
its rewrite, reject or unparseable -> a refusal."""

from __future__ import annotations

from safegrpo.envs.moderation.models import parse_action
from safegrpo.policies.inference import saved_format
from safegrpo.policies.lm import LMPolicy
from safegrpo.policies.targets import frozen_policy


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
        """-> (decision per prompt: allow|transform|reject|invalid,
        text passed to the generator)."""
        outs = self.defender.complete(
            [self.template.format(prompt=p) for p in prompts], greedy=True
        )
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
