"""Training the shapes world's tiny CLIP and tiny pixel UNet (see ``worlds.shapes``)."""

from __future__ import annotations

import random
from pathlib import Path

import torch
import torch.nn.functional as F

from safegrpo.core.progress import track
from safegrpo.worlds.shapes import (
    BACKGROUNDS,
    BLANK_CAPTION,
    COLORS,
    DEGENERATE_CAPTION,
    FAMILIES,
    all_prompts,
    dataset,
    degenerate,
    describe,
)


def train_tiny_clip(
    out_dir: str | Path, *, steps: int = 400, batch: int = 128, seed: int = 0, log=print
) -> Path:
    """Contrastive training of a tiny CLIP on the shapes world; saved with save_pretrained."""
    from transformers import CLIPModel

    from safegrpo.judges.clip import as_features
    from safegrpo.policies.tiny_clip import build_tiny_clip

    corpus = (
        [p for p, *_ in all_prompts()]
        + [f"a {c} shape" for c in [*COLORS, *FAMILIES]]
        + ["a shape", "an image"]
    )
    corpus += [DEGENERATE_CAPTION] + [BLANK_CAPTION.format(bg=b) for b in BACKGROUNDS]
    out = build_tiny_clip(
        out_dir, corpus * 5, dim=64, hidden=64, image_size=16, layers=2, seed=seed
    )
    from transformers import AutoTokenizer

    model, tok = CLIPModel.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    torch.manual_seed(seed)
    model.train()
    for step in track(range(steps), "shapes world: CLIP"):
        imgs, texts = dataset(batch, seed=seed * 100_003 + step, augment=True)
        # descriptor-level captions ("a red shape") teach the colour axis
        # that the steering direction uses
        texts = [t if random.Random(step * 7 + i).random() < 0.8 else f"a {describe(t)[0]} shape"
                 for i, t in enumerate(texts)]
        n_neg = batch // 8
        neg_imgs, neg_texts = degenerate(n_neg, random.Random(seed * 31 + step))
        imgs, texts = torch.cat([imgs[n_neg:], neg_imgs]), texts[n_neg:] + neg_texts
        enc = tok(texts, padding=True, return_tensors="pt")
        ti = model.get_text_features(**enc)
        ii = model.get_image_features(pixel_values=imgs * 2 - 1)
        ti, ii = F.normalize(as_features(ti), dim=-1), F.normalize(as_features(ii), dim=-1)
        logits = ii @ ti.T * model.logit_scale.exp()
        # captions repeat within a batch: soft targets over identical captions
        same = torch.tensor([[a == b for b in texts] for a in texts], dtype=torch.float32)
        tgt = same / same.sum(1, keepdim=True)
        loss = (F.cross_entropy(logits, tgt) + F.cross_entropy(logits.T, tgt)) / 2
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 100 == 0 or step == steps - 1:
            log(f"      clip step {step}: contrastive loss {loss.item():.3f}")
    model.eval()
    model.save_pretrained(out)
    return Path(out)


def train_tiny_unet(pipe_dir: str | Path, *, steps: int = 1500, batch: int = 64, lr: float = 2e-3,
                    seed: int = 0, log=print) -> None:
    """DDPM epsilon-prediction training of the pipeline's UNet on the shapes world (in place)."""
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel

    pipe_dir = Path(pipe_dir)
    unet = UNet2DConditionModel.from_pretrained(pipe_dir / "unet")
    te = CLIPTextModel.from_pretrained(pipe_dir / "text_encoder").eval()
    tok = AutoTokenizer.from_pretrained(pipe_dir / "tokenizer")
    sched = DDIMScheduler.from_pretrained(pipe_dir / "scheduler")
    prompts = [p for p, *_ in all_prompts()]
    with torch.no_grad():
        enc = tok(
            prompts,
            padding="max_length",
            max_length=tok.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        table = dict(zip(prompts, te(enc["input_ids"])[0], strict=True))
    opt = torch.optim.AdamW(unet.parameters(), lr=lr)
    sch = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    unet.train()
    for step in track(range(steps), "shapes world: UNet"):
        imgs, texts = dataset(batch, seed=seed * 7_777 + step)
        x0 = imgs * 2 - 1
        t = torch.randint(0, sched.config.num_train_timesteps, (batch,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        xt = sched.add_noise(x0, noise, t)
        cond = torch.stack([table[p] for p in texts])
        loss = F.mse_loss(unet(xt, t, encoder_hidden_states=cond).sample, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sch.step()
        opt.zero_grad(set_to_none=True)
        if step % 250 == 0 or step == steps - 1:
            log(f"      unet step {step}: denoising loss {loss.item():.4f}")
    unet.eval()
    unet.save_pretrained(pipe_dir / "unet")


def clip_text_encoder(clip_dir: str | Path):
    """The trained tiny CLIP's text tower as a standalone CLIPTextModel (the UNet's conditioner)."""
    from transformers import CLIPModel, CLIPTextModel

    clip = CLIPModel.from_pretrained(clip_dir)
    te = CLIPTextModel(clip.config.text_config)
    te.load_state_dict(clip.text_model.state_dict())
    return te.eval()
