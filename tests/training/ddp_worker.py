"""Run under `torchrun --nproc_per_node 2 tests/training/ddp_worker.py MODEL OUT [OPTIONS_JSON]`.

Options (all optional): ``steps``; ``constant_rank`` (that rank's task gives every completion the
same reward, so all its advantages are 0); ``stop_rank`` / ``stop_at`` (a stop rule that fires on
that rank only, at that step); ``half_loss`` (single process: scale the loss by 1/2, the DDP
average of this rank's gradient with a rank that contributes nothing).
"""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from safegrpo.core.types import ScoredBatch  # noqa: E402
from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig  # noqa: E402
from safegrpo.training.grpo import GRPOConfig, GRPOTrainer  # noqa: E402
from tests.training.fake_task import VowelTask  # noqa: E402


class ConstantTask(VowelTask):
    """Same prompts as VowelTask, but every completion scores 0.5: zero-variance groups."""

    def score(self, items, completions, group_ids):
        r = torch.full((len(completions),), 0.5)
        return ScoredBatch(total=r, components={"vowels": r, "length": torch.zeros_like(r)},
                           info=tuple({"decision": "allow"} for _ in completions))


def build(model_path: str, out_dir: str, opts: dict) -> GRPOTrainer:
    pol = LMPolicy(LMPolicyConfig(model=model_path, lora=LoRAConfig(r=4), max_new_tokens=8))
    cfg = GRPOConfig(steps=opts.get("steps", 1), prompts_per_step=2, group_size=4, minibatch_size=4,
                     lr=1e-2, out_dir=out_dir, save_every=0, report_to="none")
    rank = int(os.environ.get("RANK", "0"))
    tr = GRPOTrainer(pol, ConstantTask() if opts.get("constant_rank") == rank else VowelTask(), cfg)
    if opts.get("stop_rank") == rank:
        tr.stop_rules.append(lambda m: "local rule" if len(tr.history) > opts["stop_at"] else None)
    if opts.get("half_loss"):
        backward = tr.accelerator.backward
        tr.accelerator.backward = lambda loss, **kw: backward(loss * 0.5, **kw)
    return tr


def main(model_path: str, out_dir: str, opts: dict) -> None:
    tr = build(model_path, out_dir, opts)
    pol, acc = tr.policy, tr.accelerator
    init = torch.cat([p.detach().flatten().clone() for p in pol.trainable_parameters()])
    local, real_step = [], tr.step
    tr.step = lambda s: local.append(real_step(s)) or local[-1]  # this rank's, before the mean
    tr.train()
    flat = torch.cat([p.detach().flatten() for p in pol.trainable_parameters()])
    gathered = acc.gather(flat.unsqueeze(0))  # [world, N]
    rewards = acc.gather(torch.tensor([local[-1]["reward/total"]]))
    steps = acc.gather(torch.tensor([len(tr.history)]))
    if acc.is_main_process:
        rec = {"world": acc.num_processes,
               "max_rank_diff": float((gathered[0] - gathered[-1]).abs().max()),
               "moved": float((flat - init).abs().max()), "rank_rewards": rewards.tolist(),
               "rank_steps": steps.tolist(), "stop_reason": tr.stop_reason,
               "logged_reward": tr.history[-1]["reward/total"]}
        with open(os.path.join(out_dir, "ddp.json"), "w") as f:
            json.dump(rec, f)
        torch.save({k: v.detach().clone() for k, v in pol.model.named_parameters()
                    if v.requires_grad}, os.path.join(out_dir, "weights.pt"))
    acc.wait_for_everyone()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()  # clean gloo teardown before interpreter exit


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]) if len(sys.argv) > 3 else {})
