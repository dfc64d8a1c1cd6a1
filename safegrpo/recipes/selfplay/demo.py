"""`safegrpo demo selfplay`: attacker-defender self-play in the moderation arena on CPU.

The defender is the moderation recipe's SFT'd tiny defender (``moderation.base_model``, e.g.
SmolLM2 in configs/selfplay_smollm.yaml, SFT'd the same way; or a trained ``defender_model``), the
attacker the red-team recipe's tiny attacker (or ``attacker.model.base_model``); both get LoRA
adapters. Reports the defender's held-out per-tier table before and after self-play and, per
round, both players' figures: the attacker's success before and after the defender update (by
the training judge and the held-out judges) and the defender's pass-through / over-refusal on
held-out prompts after it (``selfplay.round_eval``).
Writes under ``out_dir``: config.yaml, moderation/ (defender base + SFT), redteam/ (attacker SFT),
round_k/{attacker,defender}/ (GRPO stages), rounds.jsonl, eval_table.json/.md, summary.json.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from safegrpo.core.config import save_run_config
from safegrpo.recipes.base import RunContext, Stage, run_recipe
from safegrpo.recipes.moderation.pipeline import ModerationRecipeConfig
from safegrpo.recipes.redteam.pipeline import RedTeamRecipeConfig
from safegrpo.recipes.selfplay.console import (  # noqa: F401 (render_summary: the CLI's)
    _defender_cols,
    _rounds_md,
    hacking_lines,
    render_summary,
)
from safegrpo.recipes.selfplay.pipeline import (
    SelfPlayConfig,
    defender_round_eval,
    players,
    selfplay_round,
)


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


def selfplay_hacking(table: list[dict[str, Any]], rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Both players' training reward vs metrics no reward computed.

    - defender: its GRPO reward over the first logged rows of round 0 and the last rows of the
      last round, vs the label-based metrics of the moderation table (strict pass-through,
      over-refusal, distinct rewrites) on the hand-written split before and after self-play;
    - attacker: its GRPO reward at the end of each round's stage vs the held-out judges' attack
      success on the same round's fixed-seed attacks (before the defender update): C = rounds
      checkpoints, so 3 rounds use the Spearman test."""
    from safegrpo.eval.reward_hacking import hacking_report, table_hacking

    defender = table_hacking(table, [rounds[0]["defender_reward_start"],
                                     rounds[-1]["defender_reward_end"]],
                             ["before_selfplay", "after_selfplay"])
    held = sorted(k[:-len("_before")] for k in rounds[0]
                  if k.startswith("heldout_success/") and k.endswith("_before"))
    attacker = hacking_report([r["attacker_reward_end"] for r in rounds],
                              {k: ([r[f"{k}_before"] for r in rounds], True) for k in held})
    return {"flag": defender["flag"] or attacker["flag"], "defender": defender,
            "attacker": attacker}



DEFENDER_SEED_COLUMNS = (("parse", "parse_rate"), ("pass all", "unsafe_pass_through"),
                         ("over-refusal", "benign_over_refusal"), ("mean reward", "mean_reward"))


def _seed_views(summary: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    """One seed's summary -> (defender rows: split, method, n and DEFENDER_SEED_COLUMNS over
    every prompt, pass-through per unsafe tier; round rows: the attacker's success before / after
    the defender update, the defender's round figures after it)."""
    by = {(r["split"], r["method"], r["tier"]): r for r in summary["table"]}
    defender = []
    for (split, method, tier), r in by.items():
        if tier != "all":
            continue
        row = {"split": split, "method": method, "n": r["n"]}
        row |= {f"pass {t}": by[(split, method, t)].get("unsafe_pass_through")
                for t in ("T1", "T2", "T3") if (split, method, t) in by}
        defender.append(row | {title: r.get(key) for title, key in DEFENDER_SEED_COLUMNS})
    attacker = []
    for r in summary["rounds"]:
        row: dict[str, Any] = {"round": str(r["round"])}
        for when in ("before", "after"):
            row[f"success {when} (training)"] = r[f"attack_success_{when}_defender_update"]
            row |= {f"success {when} (held-out: {k.split('/')[1][:-len(when) - 1]})": v
                    for k, v in r.items()
                    if k.startswith("heldout_success/") and k.endswith(f"_{when}")}
        attacker.append(row | {title: r[k] for title, k in _defender_cols(r)
                               if r[k] is not None})
    return defender, attacker


def combine_seeds(cfgs: list[Any], summaries: list[dict[str, Any]]):
    """``demo --seeds``: the defender's headline rates, the attacker's per-round success and the
    defender's per-round figures, each a mean ± 95 % interval over the seeds' values -> (rows,
    markdown)."""
    from safegrpo.eval.seeds import generic_seed_rows, hacking_verdicts, render_seed_table

    seeds = [c.seed for c in cfgs]
    views = [_seed_views(s) for s in summaries]
    defender = sorted(generic_seed_rows([d for d, _ in views]),
                      key=lambda r: (r["split"], r["method"] != "before_selfplay"))
    attacker = generic_seed_rows([a for _, a in views])
    md = ("**Defender before and after self-play** (pass-through and over-refusal from labels)"
          "\n\n" + render_seed_table(defender, seeds, per_prompt=False)
          + "\n\n**Per round: the attacker before and after the defender update, the "
          "defender after it**\n\n"
          + render_seed_table(attacker, seeds, per_prompt=False))
    verdicts = hacking_verdicts(seeds, summaries)
    return defender + attacker, md + (f"\n\n{verdicts}" if verdicts else "")


def _setup(ctx: RunContext) -> None:
    from safegrpo.recipes.moderation.demo import eval_splits
    from safegrpo.recipes.moderation.pipeline import (
        build_reward,
        load_defender,
        prepare_base,
        run_sft,
    )
    from safegrpo.recipes.redteam.pipeline import prepare_attacker

    cfg, st, log = ctx.cfg, ctx.state, ctx.log
    save_run_config(cfg)
    st["mcfg"] = mcfg = replace(cfg.moderation, out_dir=str(Path(cfg.out_dir) / "moderation"),
                                seed=cfg.seed)
    st["rcfg"] = rcfg = replace(cfg.attacker, out_dir=str(Path(cfg.out_dir) / "redteam"),
                                seed=cfg.seed)
    log("[1/4] defender" + (f": {cfg.defender_model}" if cfg.defender_model
                            else f": SFT of {mcfg.base_model or 'the tiny defender'}"))
    defender = load_defender(mcfg, cfg.defender_model or prepare_base(mcfg))
    if not cfg.defender_model:
        run_sft(mcfg, defender, resume=True)
    if mcfg.policy.lora.r > 0:
        defender.attach_lora(mcfg.policy.lora)
    log("[2/4] attacker: SFT of the tiny attacker" if not rcfg.model.base_model
        else "[2/4] attacker ready")
    arena_reward = build_reward(mcfg)
    st.update(players(mcfg, rcfg, cfg.selfplay, defender, prepare_attacker(rcfg, log),
                      arena_reward))
    st["arena_reward"], st["rounds"] = arena_reward, []
    st["splits"] = eval_splits(mcfg)


def _evaluate(name: str):
    def run(ctx: RunContext) -> None:
        from safegrpo.eval.moderation import evaluate
        from safegrpo.recipes.moderation.demo import policy_defender

        st = ctx.state
        defender = policy_defender(st["defender"], st["mcfg"].arena.prompt_template)
        st[name] = [row for split, recs in st["splits"].items()
                    for row in evaluate(name, defender, recs, st["arena_reward"], split)]
    return run


def _round(k: int):
    def run(ctx: RunContext) -> None:
        st = ctx.state
        out = Path(ctx.cfg.out_dir)
        rnd = selfplay_round(k, st, st["mcfg"], st["rcfg"], ctx.cfg.selfplay, out, ctx.resume,
                             ctx.log)
        st["rounds"].append(rnd | defender_round_eval(st, st["mcfg"], ctx.cfg.selfplay.round_eval))
        (out / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in st["rounds"]))
    return run


def _report(ctx: RunContext) -> None:
    from safegrpo.eval.moderation import headline_table, tier_table

    st, out = ctx.state, Path(ctx.cfg.out_dir)
    table, rounds = tier_table(st.get("before_selfplay", []) + st["after_selfplay"]), st["rounds"]
    md = ("**Defender before and after self-play** (template holdout and hand-written split; "
          "pass-through and over-refusal from labels)\n\n" + headline_table(table)
          + "\n\n**Per round: the attacker before → after the defender update** (fixed-seed "
          "attacks), **the defender after it** (held-out prompts)\n\n" + _rounds_md(rounds))
    hacking = selfplay_hacking(table, rounds) if rounds else {}
    if hacking:
        md += "\n\n" + hacking_lines(hacking, len(rounds))
    (out / "eval_table.json").write_text(json.dumps({"defender": table, "rounds": rounds},
                                                    indent=1))
    (out / "eval_table.md").write_text(md + "\n")
    ctx.summary = {"wall_time_s": time.perf_counter() - ctx.started, "table": table,
                   "rounds": rounds, "markdown": md, "hacking": hacking,
                   "headline": {"rounds": len(rounds), "attack_success_after": [
                       r["attack_success_after_defender_update"] for r in rounds]}}
    (out / "summary.json").write_text(json.dumps(ctx.summary, indent=1))


def stages(cfg: SelfPlayRecipeConfig) -> list[Stage]:
    """Setup, the defender's holdout eval, then one train stage per round (attacker GRPO, then
    defender GRPO): the round list is data, built from ``selfplay.rounds``."""
    s = cfg.selfplay
    rounds = [Stage(f"round_{k}", _round(k), "train",
                    message=f"[3/4] self-play round {k + 1}/{s.rounds}: {s.attacker_steps} "
                            f"attacker + {s.defender_steps} defender steps")
              for k in range(s.rounds)]
    return [Stage("players", _setup, "setup"),
            Stage("eval_before", _evaluate("before_selfplay"), "baseline"), *rounds,
            Stage("eval_after", _evaluate("after_selfplay"), "eval",
                  message="[4/4] defender holdout evaluation after self-play"),
            Stage("report", _report, "report")]


def run_demo(cfg: SelfPlayRecipeConfig, resume: bool = False, log=print) -> dict[str, Any]:
    """Every stage in-process (what ``safegrpo demo selfplay`` runs)."""
    return run_recipe("selfplay", cfg, resume, log)
