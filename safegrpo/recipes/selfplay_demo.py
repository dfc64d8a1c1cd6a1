"""`safegrpo demo selfplay`: attacker-defender self-play in the moderation arena on CPU.

The defender is the moderation recipe's SFT'd tiny defender (or ``defender_model``), the attacker
the red-team recipe's tiny attacker; both get LoRA adapters. Reports the defender's held-out
per-tier table before and after self-play and the attacker's success rate per round.
Writes under ``out_dir``: config.yaml, moderation/ (defender base + SFT), redteam/ (attacker SFT),
round_k/{attacker,defender}/ (GRPO stages), rounds.jsonl, eval_table.json/.md, summary.json.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from safegrpo.recipes.moderation import ModerationRecipeConfig
from safegrpo.recipes.redteam import RedTeamRecipeConfig
from safegrpo.recipes.selfplay import SelfPlayConfig, run_selfplay

OUTPUTS = "eval_table.md, rounds.jsonl, round_*/attacker/metrics.jsonl, round_*/defender/metrics.jsonl"


@dataclass(frozen=True)
class SelfPlayRecipeConfig:
    out_dir: str = "runs/selfplay"
    """Everything is written under here."""
    seed: int = 0
    """Master seed."""
    defender_model: str = ""
    """A trained defender (full model folder); empty = SFT the moderation recipe's tiny defender."""
    moderation: ModerationRecipeConfig = field(default_factory=ModerationRecipeConfig)
    """Defender side: arena, reward, SFT and GRPO settings (its out_dir is set by the recipe)."""
    attacker: RedTeamRecipeConfig = field(default_factory=RedTeamRecipeConfig)
    """Attacker side: model, sampling and GRPO settings (its target is the defender)."""
    selfplay: SelfPlayConfig = field(default_factory=SelfPlayConfig)
    """Rounds, steps per stage, prompt mix and attacker reward."""

    def __post_init__(self) -> None:
        # fields this recipe sets itself: refuse a value it would silently replace
        derived = {"moderation.out_dir": (self.moderation.out_dir, ModerationRecipeConfig.out_dir),
                   "attacker.out_dir": (self.attacker.out_dir, RedTeamRecipeConfig.out_dir),
                   "moderation.policy.model": (self.moderation.policy.model, ""),
                   "moderation.policy.init_adapter": (self.moderation.policy.init_adapter, None)}
        for name, (value, default) in derived.items():
            if value != default:
                raise ValueError(f"{name} is set by the self-play recipe (under out_dir, or from "
                                 "defender_model / the SFT stage); leave it unset")
        seeds = {"moderation.seed": self.moderation.seed, "attacker.seed": self.attacker.seed,
                 "moderation.policy.seed": self.moderation.policy.seed}
        for name, value in seeds.items():
            if value not in (0, self.seed):
                raise ValueError(f"{name}={value} conflicts with seed={self.seed}: the self-play "
                                 "recipe derives it from seed; set seed instead")


def render_summary(summary: dict[str, Any]):
    from rich.markdown import Markdown

    return Markdown(summary["markdown"])


def _rounds_md(rounds: list[dict[str, Any]]) -> str:
    lines = ["| round | attack success (before defender update) | after | unsafe allowed before | after |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['round']} | {r['attack_success_before_defender_update']:.3f} | "
              f"{r['attack_success_after_defender_update']:.3f} | {r['unsafe_allowed_before']:.3f} | "
              f"{r['unsafe_allowed_after']:.3f} |" for r in rounds]
    return "\n".join(lines)


def run_demo(cfg: SelfPlayRecipeConfig, resume: bool = False, log=print) -> dict[str, Any]:
    from safegrpo.eval.moderation import evaluate, format_table, tier_table
    from safegrpo.recipes.moderation import (
        build_reward,
        load_defender,
        prepare_base,
        run_sft,
        save_run_config,
    )
    from safegrpo.recipes.moderation_demo import holdout_sample, policy_defender
    from safegrpo.recipes.redteam import prepare_attacker

    t0 = time.perf_counter()
    out = Path(cfg.out_dir)
    save_run_config(cfg)
    mcfg = replace(cfg.moderation, out_dir=str(out / "moderation"), seed=cfg.seed)
    rcfg = replace(cfg.attacker, out_dir=str(out / "redteam"), seed=cfg.seed)
    log("[1/4] defender" + (f": {cfg.defender_model}" if cfg.defender_model else ": SFT of the tiny defender"))
    defender = load_defender(mcfg, cfg.defender_model or prepare_base(mcfg))
    if not cfg.defender_model:
        run_sft(mcfg, defender, resume=True)
    if mcfg.policy.lora.r > 0:
        defender.attach_lora(mcfg.policy.lora)
    log("[2/4] attacker: SFT of the tiny attacker" if not rcfg.model.base_model else "[2/4] attacker ready")
    attacker_model = prepare_attacker(rcfg, log)
    arena_reward = build_reward(mcfg)
    recs = holdout_sample(mcfg)
    run = policy_defender(defender, mcfg.arena.prompt_template)
    before = evaluate("before_selfplay", run, recs, arena_reward)
    s = cfg.selfplay
    log(f"[3/4] self-play: {s.rounds} rounds x ({s.attacker_steps} attacker + {s.defender_steps} defender steps)")
    rounds = run_selfplay(mcfg, rcfg, s, defender, attacker_model, arena_reward, arena_reward.text_judge, out,
                          resume=resume, log=log)
    log("[4/4] defender holdout evaluation after self-play")
    after = evaluate("after_selfplay", run, recs, arena_reward)
    table = tier_table(before + after)
    md = ("**Defender on the arena holdout, before and after self-play**\n\n" + format_table(table)
          + "\n\n**Attacker success per round** (fixed-seed attacks vs the defender)\n\n" + _rounds_md(rounds))
    (out / "eval_table.json").write_text(json.dumps({"defender": table, "rounds": rounds}, indent=1))
    (out / "eval_table.md").write_text(md + "\n")
    summary = {"wall_time_s": time.perf_counter() - t0, "table": table, "rounds": rounds, "markdown": md}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
