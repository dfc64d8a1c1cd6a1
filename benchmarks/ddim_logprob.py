#!/usr/bin/env python
"""DDIM-with-logprob sampling time as a ratio to plain sampling on the same UNet and steps.

Plain = the loop a diffusers pipeline runs (text encoding, optional CFG, ``DDIMScheduler.step``
with eta, no recording). Ours = ``DiffusionPolicy.rollout`` (same work + per-step log-prob and
recorded latents). Target ratio <= 1.05. Random-init weights (speed only).

    python benchmarks/ddim_logprob.py                       # CPU, small UNet
    python benchmarks/ddim_logprob.py --size 64 --channels 128 256 --device cuda --batch 16
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

from safegrpo.policies.diffusion.policy import DiffusionPolicy, DiffusionPolicyConfig  # noqa: E402
from safegrpo.policies.diffusion.tiny import build_tiny_pipeline  # noqa: E402


@torch.no_grad()
def plain(pol: DiffusionPolicy, prompts, g, seed, guidance, eta):
    b = len(prompts) * g
    emb = pol.encode_prompts(prompts).repeat_interleave(g, 0)
    unc = pol.encode_prompts([""] * b) if guidance > 1 else None
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, *pol.latent_shape(), generator=gen).to(pol.device)
    for t in pol.scheduler.timesteps:
        eps = pol.predict(pol.unet, x, torch.full((b,), int(t), device=pol.device), emb, unc)
        noise = torch.randn(x.shape, generator=gen).to(pol.device)
        x = pol.scheduler.step(eps, t, x, eta=eta, variance_noise=noise).prev_sample
    return pol.decode(x)


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--channels", type=int, nargs=2, default=[64, 128])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=4, help="prompts; x group")
    ap.add_argument("--group", type=int, default=2)
    ap.add_argument("--guidance", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    d = build_tiny_pipeline(tempfile.mkdtemp(), ["a photo"] * 10, image_size=args.size,
                            channels=tuple(args.channels), text_dim=64)
    pol = DiffusionPolicy(DiffusionPolicyConfig(model=str(d), num_steps=args.steps, eta=1.0,
                                                guidance_scale=args.guidance), device=args.device)
    prompts = [f"a photo {i}" for i in range(args.batch)]
    times = {"plain": [], "logprob": []}
    for r in range(args.repeats + 1):
        for name in ("plain", "logprob") if r % 2 == 0 else ("logprob", "plain"):  # alternate order
            sync(args.device)
            t0 = time.perf_counter()
            if name == "plain":
                plain(pol, prompts, args.group, r, args.guidance, 1.0)
            else:
                pol.rollout(prompts, args.group, seed=r)
            sync(args.device)
            if r:  # first round = warm-up
                times[name].append(time.perf_counter() - t0)
    p, lp = statistics.median(times["plain"]), statistics.median(times["logprob"])
    print(f"UNet {args.size}x{args.size} channels={args.channels} steps={args.steps} "
          f"images={args.batch * args.group} cfg={args.guidance} device={args.device}")
    print(f"plain DDIM sampling:       median {p * 1000:.1f} ms")
    print(f"DDIM + log-prob + latents: median {lp * 1000:.1f} ms")
    print(f"ratio: {lp / p:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
