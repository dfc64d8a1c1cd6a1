#!/usr/bin/env python
"""GRPO step time vs. bare generation + forward/backward of the same tokens.

Both sides use the same model, prompts, G and completion tokens. "Bare" = model.generate(...)
+ one forward/backward per optimizer epoch over the generated tokens; "GRPO" = a full
GRPOTrainer.step (rollout, old/ref log-probs, reward, advantages, clipped loss, optimizer).
The reward is a cheap string function so the ratio measures engine overhead, not the judges.
Prints per-step times and the ratio measured in this run.

    python benchmarks/grpo_step.py                      # tiny model, CPU
    python benchmarks/grpo_step.py --hidden 1024 --layers 8 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from safegrpo.core.types import ScoredBatch  # noqa: E402
from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig  # noqa: E402
from safegrpo.policies.tiny import build_tiny_lm  # noqa: E402
from safegrpo.training.grpo import GRPOConfig, GRPOTrainer  # noqa: E402


class CheapTask:
    def sample_prompts(self, step, n, rank=0):
        return [f"Prompt: a photo of item {step}-{i} in a dark alley at night\nJSON:"
                for i in range(n)]

    def render(self, item):
        return item

    def score(self, items, completions, group_ids):
        r = torch.tensor([(hash(c) % 1000) / 1000 for c in completions])
        return ScoredBatch(total=r, components={"r": r})


def bare_step(pol: LMPolicy, opt, prompts, g, epochs, seed):
    pids, pmask, cids, cmask = pol.generate(prompts, g, seed=seed)
    for _ in range(epochs):
        lp, _ = pol.logprobs(pids, pmask, cids, cmask)
        loss = -(lp * cmask).sum() / cmask.sum()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return int(cmask.sum())


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--beta", type=float, default=0.02)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    corpus = ([f"a photo of item {i} in a dark alley at night" for i in range(200)]
              + ['{"decision": "allow"}'])
    path = build_tiny_lm(tmp / "m", corpus, vocab_size=1000, hidden=args.hidden, layers=args.layers,
                         heads=max(2, args.hidden // 64))
    pcfg = LMPolicyConfig(model=str(path), lora=LoRAConfig(r=16),
                          max_new_tokens=args.max_new_tokens)
    bare = LMPolicy(pcfg, device=args.device)
    bopt = torch.optim.AdamW(bare.trainable_parameters(), lr=1e-4)
    pol = LMPolicy(pcfg, device=args.device)
    tr = GRPOTrainer(pol, CheapTask(), GRPOConfig(
        steps=args.steps, prompts_per_step=args.prompts, group_size=args.group, epochs=args.epochs,
        minibatch_size=args.prompts * args.group, beta=args.beta, device=args.device,
        out_dir=str(tmp / "run"), save_every=0, report_to="none"))
    task = CheapTask()
    bare_t, grpo_t, toks = [], [], []
    for step in range(args.steps + 1):  # step 0 = warm-up, not timed
        prompts = task.sample_prompts(step, args.prompts)
        sync(args.device)
        t0 = time.perf_counter()
        n = bare_step(bare, bopt, prompts, args.group, args.epochs, seed=step)
        sync(args.device)
        t1 = time.perf_counter()
        m = tr.step(step)
        sync(args.device)
        t2 = time.perf_counter()
        if step:
            bare_t.append(t1 - t0)
            grpo_t.append(t2 - t1)
            toks.append((n, m["policy/completion_len"] * args.prompts * args.group))
    b, g = statistics.median(bare_t), statistics.median(grpo_t)
    print(f"model hidden={args.hidden} layers={args.layers} device={args.device} "
          f"B={args.prompts}x{args.group} T<={args.max_new_tokens} epochs={args.epochs} "
          f"beta={args.beta}")
    print(f"completion tokens/step (bare, grpo): {toks}")
    print(f"bare generate+fwd/bwd: median {b * 1000:.1f} ms/step")
    print(f"GRPO trainer step:     median {g * 1000:.1f} ms/step")
    print(f"ratio GRPO / bare: {g / b:.2f}")


if __name__ == "__main__":
    main()
