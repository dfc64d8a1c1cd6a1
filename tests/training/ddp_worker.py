"""Run under `torchrun --nproc_per_node 2 tests/training/ddp_worker.py MODEL OUT`."""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig  # noqa: E402
from safegrpo.training.grpo import GRPOConfig, GRPOTrainer  # noqa: E402
from tests.training.fake_task import VowelTask  # noqa: E402


def main(model_path: str, out_dir: str) -> None:
    pol = LMPolicy(LMPolicyConfig(model=model_path, lora=LoRAConfig(r=4), max_new_tokens=8))
    init = torch.cat([p.detach().flatten().clone() for p in pol.trainable_parameters()])
    cfg = GRPOConfig(steps=1, prompts_per_step=2, group_size=4, minibatch_size=8, lr=1e-2,
                     out_dir=out_dir, save_every=0, tensorboard=False)
    tr = GRPOTrainer(pol, VowelTask(), cfg)
    acc = tr.accelerator
    tr.train()
    flat = torch.cat([p.detach().flatten() for p in pol.trainable_parameters()])
    gathered = acc.gather(flat.unsqueeze(0))  # [world, N]
    rewards = acc.gather(torch.tensor([tr.history[-1]["reward/total"]]))
    if acc.is_main_process:
        rec = {"world": acc.num_processes, "max_rank_diff": float((gathered[0] - gathered[-1]).abs().max()),
               "moved": float((flat - init).abs().max()), "rank_rewards": rewards.tolist()}
        with open(os.path.join(out_dir, "ddp.json"), "w") as f:
            json.dump(rec, f)
    acc.wait_for_everyone()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()  # clean gloo teardown before interpreter exit


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
