"""A random-init CLIP (tiny text + vision towers) with tokenizer and image processor, saved with
save_pretrained so CLIP judges load it through the real from_pretrained path."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch


def build_tiny_clip(out_dir: str | Path, corpus: Iterable[str], *, dim: int = 32,
                    image_size: int = 32, vocab_size: int = 500, seed: int = 0,
                    hidden: int | None = None, layers: int = 1) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from safegrpo.policies.tiny import build_tokenizer

    out = Path(out_dir)
    tok = build_tokenizer(corpus, vocab_size)
    h = hidden or dim
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=h, intermediate_size=h * 2,
                         num_hidden_layers=layers, num_attention_heads=2,
                         max_position_embeddings=64, pad_token_id=tok.pad_token_id,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id),
        vision_config=dict(hidden_size=h, intermediate_size=h * 2, num_hidden_layers=layers,
                           num_attention_heads=2, image_size=image_size,
                           patch_size=max(image_size // 4, 1)),
        projection_dim=dim,
    )
    torch.manual_seed(seed)
    model = CLIPModel(cfg)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    CLIPImageProcessor(size={"shortest_edge": image_size},
                       crop_size={"height": image_size, "width": image_size},
                       image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]
                       ).save_pretrained(out)
    return out
