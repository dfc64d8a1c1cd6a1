"""Two CPU processes under accelerate: each rank samples different prompts; after a GRPO step
the weights must be identical on both ranks (DDP averaged the gradients)."""

import json
import os

import torch
from accelerate import debug_launcher


def _worker(model_path: str, out_dir: str) -> None:
    from accelerate import Accelerator

    from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig
    from safegrpo.training.grpo import GRPOConfig, GRPOTrainer
    from tests.training.fake_task import VowelTask

    pol = LMPolicy(LMPolicyConfig(model=model_path, lora=LoRAConfig(r=4), max_new_tokens=8))
    init = torch.cat([p.detach().flatten().clone() for p in pol.trainable_parameters()])
    cfg = GRPOConfig(steps=1, prompts_per_step=2, group_size=4, minibatch_size=8, lr=1e-2,
                     out_dir=out_dir, save_every=0, tensorboard=False)
    tr = GRPOTrainer(pol, VowelTask(), cfg)
    acc: Accelerator = tr.accelerator
    assert acc.num_processes == 2
    # local gradient before sync differs across ranks: record the rank's own rollout rewards
    tr.train()
    flat = torch.cat([p.detach().flatten() for p in pol.trainable_parameters()])
    gathered = acc.gather(flat.unsqueeze(0))  # [2, N]
    if acc.is_main_process:
        rec = {"max_rank_diff": float((gathered[0] - gathered[1]).abs().max()),
               "moved": float((flat - init).abs().max()),
               "rank_prompts_differ": VowelTask().sample_prompts(0, 2, 0) != VowelTask().sample_prompts(0, 2, 1)}
        with open(os.path.join(out_dir, "ddp.json"), "w") as f:
            json.dump(rec, f)


def test_two_cpu_processes_synchronise_gradients(tiny_lm_path, tmp_path):
    debug_launcher(_worker, args=(tiny_lm_path, str(tmp_path)), num_processes=2)
    rec = json.loads((tmp_path / "ddp.json").read_text())
    assert rec["rank_prompts_differ"]
    assert rec["moved"] > 0
    assert rec["max_rank_diff"] == 0.0
