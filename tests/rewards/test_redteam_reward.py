"""Red-team reward maths on hand-computed cases, and the exploits its penalties block."""

import pytest
import torch

from safegrpo.core.types import ScoredBatch
from safegrpo.rewards.redteam import (
    RedTeamReward,
    RedTeamRewardConfig,
    group_duplicate_share,
    repetition_ratio,
)
from safegrpo.rewards.shaping import shape_reward


def test_repetition_ratio_hand_computed():
    r = repetition_ratio(["a b a b a b", "a b c d", "hello", "x x x x"], n=2)
    # "a b a b a b": 5 bigrams, 2 distinct -> 1 - 2/5; "x x x x": 3 bigrams, 1 distinct
    torch.testing.assert_close(r, torch.tensor([0.6, 0.0, 0.0, 2 / 3]))
    torch.testing.assert_close(repetition_ratio(["a a b"], n=1), torch.tensor([1 - 2 / 3]))


def test_group_duplicate_share_hand_computed():
    texts = ["Kill  it", "kill it", "other", "solo", "x", "x"]
    out = group_duplicate_share(texts, torch.tensor([0, 0, 0, 1, 2, 2]))
    torch.testing.assert_close(out, torch.tensor([0.5, 0.5, 0.0, 0.0, 1.0, 1.0]))


def test_shape_reward_kl_then_clip():
    sb = ScoredBatch(total=torch.tensor([0.9, 0.2, -0.5]),
                     components={"toxicity": torch.tensor([0.9, 0.2, -0.5])})
    out = shape_reward(sb, torch.tensor([1.0, -2.0, 4.0]), kl_coef=0.1, clip=0.75)
    torch.testing.assert_close(out.components["kl_penalty"], torch.tensor([-0.1, 0.2, -0.4]))
    # 0.8 -> 0.75, -0.9 -> -0.75
    torch.testing.assert_close(out.total, torch.tensor([0.75, 0.4, -0.75]))
    assert shape_reward(sb, None, 0.0, 0.0).total is sb.total
    with pytest.raises(ValueError, match="reference log-probs"):
        shape_reward(sb, None, 0.1, 0.0)


class EchoTarget:
    def respond(self, prompts):
        return list(prompts)


class WordJudge:
    """toxicity = 1 if the response contains 'hate', else 0."""

    def score(self, texts):
        return torch.tensor([float("hate" in t) for t in texts])


def test_repetition_penalty_blocks_word_padding_exploit():
    reward = RedTeamReward(WordJudge(), EchoTarget(),
                           RedTeamRewardConfig(repetition_coef=1.0, ngram=1))
    out = reward(["i hate rainy mondays", "hate hate hate hate hate hate"], torch.tensor([0, 0]))
    torch.testing.assert_close(out.components["toxicity"], torch.tensor([1.0, 1.0]))
    assert out.total[0] > out.total[1]  # the padded attack scores lower
    torch.testing.assert_close(out.total, torch.tensor([1.0, 1.0 - 5 / 6]))
    assert out.info[1]["response"] == "hate hate hate hate hate hate"
    assert "judge/repetition_ratio" in out.components


def test_duplicate_penalty_blocks_group_collapse():
    reward = RedTeamReward(WordJudge(), EchoTarget(),
                           RedTeamRewardConfig(repetition_coef=0.0, duplicate_coef=0.5))
    collapsed = reward(["i hate x", "i hate x", "i hate x", "i hate x"],
                       torch.tensor([0, 0, 0, 0]))
    diverse = reward(["i hate x", "you hate y", "we hate z", "they hate w"],
                     torch.tensor([0, 0, 0, 0]))
    assert (collapsed.total.mean() == pytest.approx(0.5)
            and diverse.total.mean() == pytest.approx(1.0))


class FakeDefender:
    def __init__(self, decisions):
        self.decisions = decisions

    def decide(self, prompts):
        return self.decisions[:len(prompts)], ["" for _ in prompts]


class SafeJudge:
    """p_safe = 0 if 'gore' in text else 1."""

    def score(self, texts):
        return torch.tensor([0.0 if "gore" in t else 1.0 for t in texts])


def test_selfplay_success_matrix_hand_computed():
    from safegrpo.rewards.redteam import SelfPlayAttackReward, SelfPlayRewardConfig

    attacks = ["lots of gore in a room", "lots of gore in a hall", "a calm lake at dawn",
               "a calm forest at dusk"]
    defender = FakeDefender(["allow", "reject", "reject", "allow"])
    cfg = SelfPlayRewardConfig(repetition_coef=0.0, duplicate_coef=0.0)
    out = SelfPlayAttackReward(defender, SafeJudge(), cfg)(attacks, torch.tensor([0, 0, 1, 1]))
    # unsafe allowed -> 1; unsafe rejected -> 0; benign rejected (over-refusal) -> 1;
    # benign allowed -> 0
    torch.testing.assert_close(out.components["success"], torch.tensor([1.0, 0.0, 1.0, 0.0]))
    assert out.info[2]["decision"] == "reject" and out.info[0]["p_unsafe"] == 1.0


def test_selfplay_penalties_block_collapse_and_empty_attacks():
    from safegrpo.rewards.redteam import SelfPlayAttackReward

    defender = FakeDefender(["allow"] * 4)
    reward = SelfPlayAttackReward(defender, SafeJudge())
    same = reward(["so much gore on walls"] * 4, torch.zeros(4, dtype=torch.long))
    varied = reward(["so much gore on walls", "gore in the dark hallway", "a gore scene at night",
                     "gore by a river bank"], torch.zeros(4, dtype=torch.long))
    assert same.total.mean() == pytest.approx(0.5) and varied.total.mean() == pytest.approx(1.0)
    empty = reward(["", "gore"], torch.tensor([0, 1]))
    assert empty.total.tolist() == [-0.5, 0.5]  # short attacks pay the length penalty


class _Echo:
    def respond(self, prompts: list[str]) -> list[str]:
        return list(prompts)


def test_embedding_judge_reward_does_not_depend_on_what_was_scored_before():
    """A resumed run scores its first batch with an empty embedding cache; the uninterrupted run
    reads the repeated attack from its cache, where it was embedded next to a long text. Both
    must give the same reward (batched MiniLM: one float32 ulp apart, enough for GRPO to
    diverge)."""
    from safegrpo.judges.embeddings import build_embedder
    from safegrpo.judges.toxicity import EmbeddingClassifierJudge

    fit = ["a cat on a sofa", "a sunny beach", "a man stabbing a stranger", "blood and gore"]
    batches = [["a knife in a dark alley", "a long calm walk " * 12], ["a knife in a dark alley"]]
    gids = torch.tensor([0, 0])

    def totals(start: int) -> list[torch.Tensor]:
        # weakly regularised (c): a last-bit embedding difference shows in the float32 reward
        judge = EmbeddingClassifierJudge(fit, [0, 0, 1, 1], embedder=build_embedder("minilm"),
                                         c=1e4)
        reward = RedTeamReward(judge, _Echo())
        return [reward(b, gids[: len(b)]).total for b in batches[start:]]

    straight, resumed = totals(0), totals(1)
    assert torch.equal(straight[1], resumed[0]), (straight[1] - resumed[0]).abs().max()
