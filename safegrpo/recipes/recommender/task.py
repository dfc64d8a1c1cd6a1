"""The recommender's GRPO task: per-rank rewards and the token -> rank map of a completion."""

from __future__ import annotations

import random

import torch
from torch import Tensor

from safegrpo.core.types import LMRollout, ScoredBatch
from safegrpo.envs.recommender.catalog import _LINE, Catalog, User, parse_list, render_prompt
from safegrpo.rewards.recommender import COMPONENTS, RankRewardConfig, per_rank_rewards


def line_ranks(text: str, k: int) -> list[int]:
    """Rank index per line of ``text``: item lines count 0, 1, ...; other lines join the previous
    item (or rank 0); lines past the K-th item join rank K-1."""
    ranks, r = [], -1
    for line in text.split("\n"):
        if _LINE.match(line):
            r += 1
        ranks.append(min(max(r, 0), k - 1))
    return ranks


class RecTask:
    """LMTask with per-rank rewards (``ScoredBatch.segments``) and a token -> rank map."""

    reward_shape = "segments"

    def __init__(
        self,
        users: list[User],
        catalog: Catalog,
        reward: RankRewardConfig,
        tokenizer,
        seed: int = 0,
    ):
        self.users, self.catalog, self.cfg = users, catalog, reward
        self.tok, self.seed = tokenizer, seed
        self.oracle = catalog.oracle(reward.oracle_threshold)

    def sample_prompts(self, step: int, n: int, rank: int = 0) -> list[User]:
        rng = random.Random(self.seed * 1_000_003 + step * 101 + rank)
        return rng.sample(self.users, n)

    def render(self, user: User) -> str:
        return render_prompt(user, self.catalog, self.cfg.k)

    def score(self, users: list[User], completions: list[str], group_ids: Tensor) -> ScoredBatch:
        lists = [parse_list(c, self.catalog) for c in completions]
        seg = per_rank_rewards(
            lists, [set(u.relevant) for u in users], [u.avoid for u in users], self.oracle, self.cfg
        )
        comps = {name: torch.nansum(seg[..., j], dim=1) for j, name in enumerate(COMPONENTS)}
        info = tuple({"n_items": len(x)} for x in lists)
        return ScoredBatch(total=sum(comps.values()), components=comps, info=info, segments=seg,
                           segment_names=COMPONENTS)

    def segment_map(self, ro: LMRollout) -> Tensor:
        """[B, T]: rank of each completion token (-1 on padding), from newline positions."""
        out = torch.full(ro.completion_ids.shape, -1, dtype=torch.long)
        for b in range(ro.completion_ids.shape[0]):
            ids = ro.completion_ids[b][ro.completion_mask[b].bool()].tolist()
            ranks = line_ranks(ro.completions[b], self.cfg.k)
            n_present = max(1, min(len(parse_list(ro.completions[b], self.catalog)), self.cfg.k))
            for t in range(len(ids)):
                line = self.tok.decode(ids[:t], skip_special_tokens=True).count("\n")
                out[b, t] = min(ranks[min(line, len(ranks) - 1)], n_present - 1)
        return out
