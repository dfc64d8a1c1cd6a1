"""Does a recommender run's Safe-SFT model avoid what users asked only for users it trained on?

Greedy lists of the run's Safe-SFT model for up to N of its own Safe-SFT users and for the users
its evaluation read (the run's ``data.eval_split``), with Recall@K and Sensitivity-Ratio@K on each.
A much lower Sensitivity on the SFT users means GRPO, which samples those same users when
``data.sft_user_share`` is 1, sees little safety signal. The run's saved config fixes the users.

    python scripts/rec_sft_memorisation.py runs/rtune_s4_1 runs/rtune_h_1
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from safegrpo.core.config import ConfigError, load_config
from safegrpo.policies.lm import LMPolicy
from safegrpo.recipes.recommender.data import load_data, split_training_users
from safegrpo.recipes.recommender.pipeline import (
    RecommenderRecipeConfig,
    prepare_base,
    run_sft,
    validate,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="recommender run folders (config.yaml, sft/model)")
    ap.add_argument("--n", type=int, default=120, help="Safe-SFT users evaluated")
    args = ap.parse_args()
    print("| run | users | n | recall@K | sensitivity_ratio@K |\n|---|---|---|---|---|")
    for run in args.runs:
        try:  # the folder as it is now, wherever it ran
            cfg = load_config(RecommenderRecipeConfig, str(Path(run) / "config.yaml"),
                              [f"out_dir={run}"])
        except ConfigError as e:
            raise SystemExit(f"{run}: {e}") from None
        catalog, train, held = load_data(cfg.data)
        sft_users, _ = split_training_users(train, cfg.data.sft_user_share)
        if not (Path(cfg.out_dir) / "sft" / "model").exists():
            raise SystemExit(f"{run}: no Safe-SFT model under {run}/sft/model")
        # the recipe's own loader: an existing Safe-SFT result is reused, never retrained
        model, adapter = run_sft(cfg, prepare_base(cfg, catalog), catalog, sft_users)
        policy = LMPolicy(replace(cfg.policy, model=model, init_adapter=adapter,
                                  lora=replace(cfg.policy.lora, r=0)))
        k = cfg.reward.k
        for name, users in (("Safe-SFT users", sft_users[:args.n]),
                            (f"{cfg.data.eval_split} users", held)):
            m = validate(policy, users, catalog, cfg.reward, name)
            print(f"| {run} | {name} | {len(users)} | {m[f'recall@{k}']:.3f} | "
                  f"{m[f'sensitivity_ratio@{k}']:.3f} |")


if __name__ == "__main__":
    main()
