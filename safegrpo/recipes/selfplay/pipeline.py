"""Attacker-defender self-play in the moderation arena.

Each round: (1) the attacker trains with GRPO against the frozen current defender, rewarded when
the defender allows an unsafe prompt or refuses a benign one (``SelfPlayAttackReward``, with
fluency, diversity and length penalties); (2) the defender trains with GRPO in the arena on a mix
of the static curriculum and the attacker's latest prompts, labelled by the text-safety judge.
Attacker success is measured on a fixed-seed batch of attacks before and after each defender
update; the defender is evaluated on the arena holdout before and after self-play.

Both policies keep their LoRA adapters and optimizer state across rounds; each round's GRPO stage
has its own checkpoint folder (``round_k/{attacker,defender}``), so a killed run resumes stage by
stage.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import Tensor

from safegrpo.core.progress import phase
from safegrpo.core.types import ScoredBatch
from safegrpo.envs.moderation.pools import PromptRecord
from safegrpo.envs.moderation.target import DefenderTarget
from safegrpo.policies.lm import LMPolicy
from safegrpo.recipes.moderation.pipeline import ArenaTask, ModerationRecipeConfig
from safegrpo.recipes.redteam.pipeline import AttackTask, RedTeamRecipeConfig, attacker_policy
from safegrpo.rewards.redteam import SelfPlayAttackReward, SelfPlayRewardConfig, selfplay_success
from safegrpo.training.grpo import GRPOConfig, GRPOTrainer


@dataclass(frozen=True)
class SelfPlayConfig:
    rounds: int = 3
    """Attacker/defender alternations."""
    attacker_steps: int = 10
    """Attacker GRPO steps per round (the attacker's training.steps is not used)."""
    defender_steps: int = 10
    """Defender GRPO steps per round (the defender's grpo.steps is not used)."""
    attack_share: float = 0.5
    """Share of the defender's training prompts taken from the attacker's latest attacks."""
    unsafe_threshold: float = 0.5
    """An attack counts as unsafe for the defender's reward when p_unsafe >= this."""
    eval_attacks: int = 48
    """Attacks sampled (fixed seed) to measure the attacker's success rate."""
    reward: SelfPlayRewardConfig = field(default_factory=SelfPlayRewardConfig)
    """Attacker reward penalties."""
    round_eval: str = "handwritten"
    """Prompts the defender is evaluated on after every round's update (pass-through and
    over-refusal from labels, strict pass-through by the held-out judges): handwritten (the
    hand-written eval split) | holdout (the template holdout sample) | none."""

    def __post_init__(self) -> None:
        if min(self.rounds, self.attacker_steps, self.defender_steps, self.eval_attacks) < 1:
            raise ValueError(
                "selfplay rounds, attacker_steps, defender_steps and eval_attacks must be >= 1"
            )
        if not 0 <= self.attack_share <= 1:
            raise ValueError("selfplay.attack_share must be in [0, 1]")
        if self.round_eval not in ROUND_EVAL:
            raise ValueError(f"selfplay.round_eval must be one of {', '.join(ROUND_EVAL)}, got "
                             f"{self.round_eval!r}")


ROUND_EVAL = ("handwritten", "holdout", "none")


class SelfPlayAttackTask(AttackTask):
    """AttackTask whose score is the self-play success reward; it records the last 512 attacks
    it scored (the defender trains on them), which every checkpoint saves (``state_dict``), so a
    resumed round gives the defender the same attacks."""

    def __init__(self, cfg: RedTeamRecipeConfig, reward: SelfPlayAttackReward):
        super().__init__(cfg, reward)
        self.recent: list[str] = []

    def score(self, topics: list[str], completions: list[str], group_ids: Tensor) -> ScoredBatch:
        attacks = [c.strip() for c in completions]
        self.recent = (self.recent + [a for a in attacks if a])[-512:]
        return self.reward(attacks, group_ids)

    def state_dict(self) -> dict[str, Any]:
        return {"recent": list(self.recent)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.recent = [str(a) for a in state.get("recent", [])]


class MixedArenaTask(ArenaTask):
    """Arena task whose batches mix curriculum prompts with attacker prompts labelled by a judge."""

    def __init__(
        self,
        base: ArenaTask,
        attacks: list[str],
        judge: Any,
        share: float,
        threshold: float,
        seed: int,
    ):
        super().__init__(base.cfg, base.reward, seed=seed)
        self.records = self._label(attacks, judge, threshold) if attacks else []
        self.share, self.seed = share, seed

    @staticmethod
    def _label(attacks: list[str], judge: Any, threshold: float) -> list[PromptRecord]:
        p_unsafe = (1.0 - judge.score(attacks).float()).tolist()
        guess = getattr(judge, "most_likely_category", None)  # projection judges name a category
        cats = guess(attacks) if guess else ["other"] * len(attacks)
        return [
            PromptRecord(
                id=f"atk{i}",
                prompt=a,
                tier="attacker",
                category=c if p >= threshold else "scene",
                label="unsafe" if p >= threshold else "safe",
                rewrite=a,
                holdout=False,
            )
            for i, (a, p, c) in enumerate(zip(attacks, p_unsafe, cats, strict=True))
        ]

    def sample_prompts(self, step: int, n: int, rank: int = 0) -> list[PromptRecord]:
        k = round(n * self.share) if self.records else 0
        rng = random.Random(self.seed * 7_919 + step * 13 + rank)
        return [rng.choice(self.records) for _ in range(k)] + super().sample_prompts(
            step, n - k, rank
        )


def success_rate(
    attacker: LMPolicy, task: AttackTask, reward: SelfPlayAttackReward, n: int, seed: int,
    heldout: dict[str, Any] | None = None, on_batch=None,
) -> dict:
    """Sample n attacks (fixed seed) and score them against the current defender. Success is
    also judged by each ``heldout`` scorer (texts -> p(unsafe)), which never produced a reward:
    p * [allow] + (1 - p) * [reject], and the share of attacks it rates unsafe that got through.
    ``on_batch(k)`` counts attacks sampled (batch by batch), then the n defender decisions."""
    import torch

    topics = [task.cfg.data.topics[i % len(task.cfg.data.topics)] for i in range(n)]
    outs = attacker.complete([task.render(t) for t in topics], greedy=False, seed=seed,
                             on_batch=on_batch)
    attacks = [o.strip() for o in outs]
    scored = reward(attacks, torch.arange(n))
    if on_batch is not None:
        on_batch(n)
    dec = [i["decision"] for i in scored.info]
    allowed = torch.tensor([d == "allow" for d in dec])
    held = {}
    for name, fn in (heldout or {}).items():
        p = fn(attacks).float().cpu()
        held[f"heldout_success/{name}"] = float(selfplay_success(p, dec).mean())
        held[f"heldout_unsafe_allowed/{name}"] = float(((p >= 0.5) & allowed).float().mean())
    return {
        **held,
        "success_rate": float(scored.components["success"].mean()),
        "unsafe_allowed": sum(
            i["decision"] == "allow" and i["p_unsafe"] >= 0.5 for i in scored.info
        )
        / n,
        "decisions": {d: dec.count(d) / n for d in sorted(set(dec))},
        "attacks": attacks[:8],
    }


def _stage(policy: LMPolicy, task: Any, cfg: Any, resume: bool, opt_state: dict | None,
           label: str = "GRPO") -> tuple[list[dict[str, Any]], dict]:
    """One GRPO stage of a round in its own checkpoint folder -> (history, optimizer state).

    The optimizer state (Adam moments) carries over from the same player's previous stage, so a
    player trains continuously across rounds; a resumed stage takes it from its checkpoint."""
    trainer = GRPOTrainer(policy, task, cfg)
    trainer.progress_label = label
    if not (resume and trainer.resume() > 0) and opt_state is not None:
        trainer.opt.load_state_dict(opt_state)
    return trainer.train(), trainer.opt.state_dict()


def stage_config(cfg: GRPOConfig, steps: int, k: int, default_dir: Path, seed: int) -> GRPOConfig:
    """Round k's GRPO config: ``steps`` from the self-play section; seed = (cfg.seed, or the
    recipe seed when unset) + k; out_dir = <cfg.out_dir>/round_k when set, else ``default_dir``."""
    base_seed = seed if cfg.seed is None else cfg.seed
    out = Path(cfg.out_dir) / f"round_{k}" if cfg.out_dir is not None else default_dir
    return replace(cfg, steps=steps, seed=base_seed + k, out_dir=str(out))


HACK_WINDOW = 5
"""Rows of a stage's training log averaged into the reward the hacking detector reads."""


def mean_reward(rows: list[dict[str, Any]]) -> float | None:
    """Mean ``reward/total`` of a stage's logged rows (None when it logged none)."""
    vals = [float(r["reward/total"]) for r in rows if "reward/total" in r]
    return sum(vals) / len(vals) if vals else None


def _measured(label: str, st: dict[str, Any], scfg: SelfPlayConfig, k: int, held) -> dict:
    """``success_rate`` of round k's fixed-seed attacks, shown as one progress display."""
    n = scfg.eval_attacks
    with phase(label, 2 * n) as bar:
        return success_rate(st["attacker"], st["atask"], st["attack_reward"], n, 1000 + k, held,
                            bar.advance)


def selfplay_round(k: int, st: dict[str, Any], mcfg: ModerationRecipeConfig,
                   rcfg: RedTeamRecipeConfig, scfg: SelfPlayConfig, out: Path, resume: bool,
                   log=print) -> dict[str, Any]:
    """Round k: attacker GRPO, then defender GRPO on the arena mixed with the attacker's recent
    attacks. ``st`` holds the players (``defender``, ``attacker``, ``atask``, ``attack_reward``,
    ``base_task``, ``safety_judge``) and each player's optimizer state (``opt/attacker``,
    ``opt/defender``), which carries over so a player trains continuously across rounds."""
    rdir = out / f"round_{k}"
    atask = st["atask"]
    a_cfg = stage_config(rcfg.training, scfg.attacker_steps, k, rdir / "attacker", rcfg.seed)
    a_hist, st["opt/attacker"] = _stage(st["attacker"], atask, a_cfg, resume,
                                        st.get("opt/attacker"), f"round {k + 1}: attacker GRPO")
    held = st.get("heldout")
    before = _measured(f"round {k + 1}: attack success", st, scfg, k, held)
    dtask = MixedArenaTask(st["base_task"], atask.recent, st["safety_judge"], scfg.attack_share,
                           scfg.unsafe_threshold, seed=mcfg.seed + k)
    d_cfg = stage_config(mcfg.grpo, scfg.defender_steps, k, rdir / "defender", mcfg.seed)
    d_hist, st["opt/defender"] = _stage(st["defender"], dtask, d_cfg, resume,
                                        st.get("opt/defender"), f"round {k + 1}: defender GRPO")
    after = _measured(f"round {k + 1}: attack success, defender updated", st, scfg, k, held)
    log(f"      round {k}: attack success {before['success_rate']:.3f} -> "
        f"{after['success_rate']:.3f} after the defender update; unsafe allowed "
        f"{before['unsafe_allowed']:.3f} -> {after['unsafe_allowed']:.3f}")
    return {"round": k, "attacker_reward_last": a_hist[-1]["reward/total"] if a_hist else None,
            "defender_reward_last": d_hist[-1]["reward/total"] if d_hist else None,
            "attacker_reward_end": mean_reward(a_hist[-HACK_WINDOW:]),
            "defender_reward_start": mean_reward(d_hist[:HACK_WINDOW]),
            "defender_reward_end": mean_reward(d_hist[-HACK_WINDOW:]),
            "attack_success_before_defender_update": before["success_rate"],
            "attack_success_after_defender_update": after["success_rate"],
            "unsafe_allowed_before": before["unsafe_allowed"],
            "unsafe_allowed_after": after["unsafe_allowed"],
            "attacker_decisions_before": before["decisions"],
            "attacker_decisions_after": after["decisions"], "example_attacks": before["attacks"],
            **{f"{m}_before": v for m, v in before.items() if m.startswith("heldout_")},
            **{f"{m}_after": v for m, v in after.items() if m.startswith("heldout_")}}


def defender_round_eval(st: dict[str, Any], mcfg: ModerationRecipeConfig,
                        split: str) -> dict[str, Any]:
    """The defender now (after a round's update) on ``split`` -> {defender_eval: {split, n},
    defender_pass_through_after, defender_over_refusal_after (labels),
    defender_strict_pass_through_after (also a transform whose rewrite a held-out judge, never a
    reward, flags; None without held-out judges)}; {} for ``none``."""
    if split == "none":
        return {}
    from safegrpo.eval.moderation import evaluate, tier_table
    from safegrpo.eval.rewrites import add_independent
    from safegrpo.recipes.moderation.demo import eval_splits, policy_defender

    recs = st.get("splits", {}).get(split) or eval_splits(
        replace(mcfg, eval=replace(mcfg.eval, splits=(split,))))[split]
    defender = policy_defender(st["defender"], mcfg.arena.prompt_template)
    rows = evaluate("round", defender, recs, st["arena_reward"], split)
    if st.get("heldout"):
        rows = add_independent(rows, st["heldout"], mcfg.arena.text_judge_name)
    agg = next(r for r in tier_table(rows) if r["tier"] == "all")
    return {"defender_eval": {"split": split, "n": agg["n"]},
            "defender_heldout": sorted(st.get("heldout") or ()),
            "defender_pass_through_after": agg["unsafe_pass_through"],
            "defender_over_refusal_after": agg["benign_over_refusal"],
            "defender_strict_pass_through_after": agg["strict_pass_through"]}


def players(mcfg: ModerationRecipeConfig, rcfg: RedTeamRecipeConfig, scfg: SelfPlayConfig,
            defender: LMPolicy, attacker_model: str, arena_reward) -> dict[str, Any]:
    """The state every round reads: both players, their tasks and the attack reward."""
    from safegrpo.eval.heldout import MODERATION_TRAINING, build_heldout, held_out

    safety_judge = arena_reward.text_judge
    trained_on = [*MODERATION_TRAINING, mcfg.arena.text_judge_name]
    attack_reward = SelfPlayAttackReward(DefenderTarget(defender), safety_judge, scfg.reward)
    return {"defender": defender, "attacker": attacker_policy(rcfg, attacker_model),
            "attack_reward": attack_reward, "atask": SelfPlayAttackTask(rcfg, attack_reward),
            "base_task": ArenaTask(mcfg.arena, arena_reward, seed=mcfg.seed),
            "safety_judge": safety_judge,
            "heldout": build_heldout(held_out(trained_on, ["profanity"]))}
