#!/usr/bin/env python
"""Judge throughput on this machine: items/s batched vs one-by-one, and their ratio.

Judges: profanity (bundled SVM), MiniLM embedder, projection text-safety judge, NudeNet
(images), a random-init CLIP ViT-B/32-sized model (text + images; random weights are fine for
speed), a tiny random-init HF classifier. Prints one line per judge, all measured in this run.

    python benchmarks/judges.py [--n 128] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TEXTS = [f"a photo of person {i} walking a dog in a park at dusk, soft light" for i in range(512)]


def rate(fn, items, batched: bool, repeats: int = 1) -> float:
    fn(items[:2])  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        if batched:
            fn(items)
        else:
            for x in items:
                fn([x])
    return len(items) * repeats / (time.perf_counter() - t0)


def row(name, unit, fn, items, fresh=None):
    b = rate(fresh() if fresh else fn, items, True)
    s = rate(fresh() if fresh else fn, items, False)
    print(f"{name:<22} {unit:<7} batched {b:9.1f}/s   one-by-one {s:9.1f}/s   ratio {b / s:6.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    texts = TEXTS[: args.n]
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (224, 224, 3), dtype=np.uint8) for _ in range(args.images)]

    from safegrpo.judges.embeddings import SentenceEmbedder
    from safegrpo.judges.text_safety import ProjectionSafetyJudge
    from safegrpo.judges.toxicity import ProfanityJudge

    row("profanity", "texts", ProfanityJudge().score, texts)
    # fresh embedders so the cache does not turn the second pass into lookups
    row("minilm (no cache)", "texts", None, texts,
        fresh=lambda: SentenceEmbedder(device=args.device).embed)
    emb = SentenceEmbedder(device=args.device)
    judge = ProjectionSafetyJudge(embedder=emb)
    row("projection (no cache)", "texts", None, texts,
        fresh=lambda: (emb._cache.clear(), judge.score)[1])
    try:
        from safegrpo.judges.visual import NudeNetJudge

        row("nudenet", "images", NudeNetJudge().score, images)
    except ImportError:
        print("nudenet: not installed")
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from safegrpo.judges.clip import CLIPEmbedder
    from safegrpo.policies.tiny import build_tokenizer

    d = Path(tempfile.mkdtemp())
    tok = build_tokenizer(texts, 1000)
    cfg = CLIPConfig(text_config={"vocab_size": len(tok), "pad_token_id": tok.pad_token_id,
                                  "bos_token_id": tok.bos_token_id,
                                  "eos_token_id": tok.eos_token_id})
    CLIPModel(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    CLIPImageProcessor().save_pretrained(d)
    clip = CLIPEmbedder(str(d), device=args.device)
    row("clip ViT-B/32 (random)", "images", clip.embed_images, images)
    row("clip text (no cache)", "texts", None, texts,
        fresh=lambda: (clip._cache.clear(), clip.embed)[1])
    print(f"machine: {torch.get_num_threads()} torch threads, device={args.device}")


if __name__ == "__main__":
    main()
