"""A GRPO run in its own process that can SIGKILL itself at a chosen point (used by
tests/reliability/test_checkpoint_kill.py).

    python tests/training/kill_worker.py MODEL OUT '{"steps": 4, "save_every": 2}' [--resume]
        [--kill update:S | --kill save:STEP:POINT]

``update:S`` dies inside training step S's first optimizer update (after backward, before
``opt.step``: a step cut short mid-way). ``save:STEP:POINT`` dies while checkpoint STEP is
written, at POINT:
``optimizer`` (optimizer.pt half written), ``rng`` (before rng.pt), ``rename`` (complete tmp dir,
not yet renamed), ``latest`` (renamed, pointer not updated), ``prune`` (pointer updated, old
checkpoints not yet removed). SIGKILL skips every finally/atexit, like ``kill -9``.
"""

import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import torch  # noqa: E402

from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig  # noqa: E402
from safegrpo.training import checkpoint as ckpt_mod  # noqa: E402
from safegrpo.training.grpo import GRPOConfig, GRPOTrainer  # noqa: E402
from tests.training.fake_task import VowelTask  # noqa: E402


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm_update_kill(tr: GRPOTrainer, at_step: int) -> None:
    current = {"step": -1}
    real_train_step, real_opt_step = tr.step, tr.opt.step

    def train_step(step):
        current["step"] = step
        return real_train_step(step)

    def opt_step(*a, **kw):
        if current["step"] == at_step:
            die()  # gradients computed, weights not yet updated
        return real_opt_step(*a, **kw)

    tr.step, tr.opt.step = train_step, opt_step


def arm_save_kill(tr: GRPOTrainer, at_step: int, point: str) -> None:
    real_save, real_replace, real_rmtree = torch.save, os.replace, ckpt_mod.shutil.rmtree
    target = f"step_{at_step:06d}"

    def in_target(path) -> bool:
        return target in str(path)

    def save(obj, f, *a, **kw):
        path = str(getattr(f, "name", f))  # checkpoints save through an open file object
        name = os.path.basename(path)
        if point == "optimizer" and in_target(path) and name == "optimizer.pt":
            real_save(obj, f, *a, **kw)
            if hasattr(f, "flush"):
                f.flush()
            with open(path, "r+b") as fh:  # leave half a file behind, as a kill mid-write would
                fh.truncate(os.path.getsize(path) // 2)
            die()
        if point == "rng" and in_target(path) and name == "rng.pt":
            die()
        return real_save(obj, f, *a, **kw)

    def replace(src, dst):
        is_final = os.path.basename(str(dst)) == target
        if point == "rename" and is_final:
            die()
        real_replace(src, dst)
        if point == "latest" and is_final:
            die()

    def rmtree(path, *a, **kw):
        if point == "prune" and str(path).endswith(".trash"):
            for root, _, files in os.walk(path):  # an old checkpoint half deleted
                for f in files[:1]:
                    os.remove(os.path.join(root, f))
            die()
        return real_rmtree(path, *a, **kw)

    torch.save = save
    ckpt_mod.os.replace = replace
    ckpt_mod.shutil.rmtree = rmtree


def main() -> None:
    model, out, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    resume = "--resume" in sys.argv
    kill = sys.argv[sys.argv.index("--kill") + 1] if "--kill" in sys.argv else None
    lora = spec.pop("lora_r", 4)
    pol = LMPolicy(LMPolicyConfig(model=model, lora=LoRAConfig(r=lora), max_new_tokens=8))
    cfg = GRPOConfig(**{"prompts_per_step": 2, "group_size": 4, "minibatch_size": 4, "lr": 1e-2,
                        "out_dir": out, "report_to": "none", **spec})
    tr = GRPOTrainer(pol, VowelTask(), cfg)
    if resume:
        tr.resume()
    if kill and kill.startswith("update:"):
        arm_update_kill(tr, int(kill.split(":")[1]))
    elif kill:
        _, at, point = kill.split(":")
        arm_save_kill(tr, int(at), point)
    tr.train()
    weights = {k: v.detach().clone() for k, v in pol.model.named_parameters()}
    torch.save(weights, os.path.join(out, "final_weights.pt"))


if __name__ == "__main__":
    main()
