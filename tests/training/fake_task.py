"""A cheap deterministic LMTask for trainer tests: reward = share of vowels in the completion."""

import torch

from safegrpo.core.types import ScoredBatch


class VowelTask:
    def sample_prompts(self, step, n, rank=0):
        return [f"Prompt: item {step} {rank} {i}\nJSON:" for i in range(n)]

    def render(self, item):
        return item

    def score(self, items, completions, group_ids):
        r = torch.tensor([sum(c in "aeiou" for c in t) / max(len(t), 1) for t in completions])
        length = torch.tensor([min(len(t), 40) / 400 for t in completions])
        return ScoredBatch(total=r + length, components={"vowels": r, "length": length},
                           info=tuple({"decision": "allow"} for _ in completions))
