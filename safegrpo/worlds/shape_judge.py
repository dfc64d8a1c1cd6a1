"""An image judge of the shapes world that no reward uses: shape and background, from pixels.

The steering reward reads images through the tiny CLIP, and the concept and colour metrics read
dominant hue only, so none of them sees a shape dissolve into a blob or a black background turn
grey-green. Two checks that do, neither fitted on anything the policy was trained against:

- ``ShapeJudge``: a small CNN trained here, from scratch, only on the renderer's ground truth
  (augmented renders of the four shapes) plus a fifth class, ``none``, for the world's
  degenerate images (noise, blurred noise, washed-out shapes, empty backgrounds). A different
  family from the contrastive CLIP behind the reward, and never shown a generated image.
- ``background_match``: rule-based; the mean of the image's 1-pixel frame (the renderer never
  draws a shape there) must lie nearer the caption's background colour than the other one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from safegrpo.core.progress import phase
from safegrpo.worlds.shapes import BACKGROUNDS, SHAPES, all_prompts, degenerate, render

CLASSES = (*SHAPES, "none")


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(64 * 4 * 4, len(CLASSES)))


def labelled_batch(n: int, rng: random.Random) -> tuple[Tensor, Tensor]:
    """-> images [n, 3, 16, 16], class index [n]: augmented renders of random captions, and one
    in five a degenerate image labelled ``none``."""
    n_none = n // 5
    combos = all_prompts()
    imgs, labels = [], []
    for _ in range(n - n_none):
        _, c, s, b = rng.choice(combos)
        imgs.append(render(c, s, b, rng, augment=rng.random() < 0.7))
        labels.append(CLASSES.index(s))
    neg, _ = degenerate(n_none, rng)
    return torch.cat([torch.stack(imgs), neg]), torch.tensor(labels + [len(SHAPES)] * n_none)


class ShapeJudge:
    """images [B, 3, 16, 16] in [0, 1] -> predicted class name per image (``predict``)."""

    def __init__(self, net: nn.Module, accuracy: float):
        self.net, self.accuracy = net.eval(), accuracy

    @torch.no_grad()
    def predict(self, images: Tensor) -> list[str]:
        return [CLASSES[int(i)] for i in self.net(images.float()).argmax(-1)]

    def shape_fidelity(self, images: Tensor, shapes: Sequence[str]) -> float:
        """Share of images [B, 3, H, W] judged to show the captioned shape (``none`` misses)."""
        got = self.predict(images)
        return sum(g == w for g, w in zip(got, shapes, strict=True)) / max(len(got), 1)


def train_shape_judge(n_train: int = 4000, epochs: int = 8, batch: int = 64, seed: int = 0,
                      n_test: int = 500) -> ShapeJudge:
    """Trains the CNN for ``epochs`` over ``n_train`` labelled images rendered once (Adam, lr 3e-3
    decayed to 0); ``accuracy`` is measured on ``n_test`` images from another seed."""
    torch.manual_seed(seed)
    net = _net()
    x, y = labelled_batch(n_train, random.Random(seed))
    steps = epochs * -(-n_train // batch)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    with phase("shapes world: shape judge", steps) as bar:
        for _ in range(epochs):
            for idx in torch.randperm(n_train, generator=g).split(batch):
                loss = F.cross_entropy(net(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.advance()
    x, y = labelled_batch(n_test, random.Random(f"test-{seed}"))
    with torch.no_grad():
        acc = float((net.eval()(x).argmax(-1) == y).float().mean())
    return ShapeJudge(net, acc)


def background_match(images: Tensor, backgrounds: Sequence[str]) -> Tensor:
    """images [B, 3, H, W] in [0, 1], captioned background per image -> [B] bool: the mean of the
    image's 1-pixel frame is nearer (L1) the captioned background colour than any other
    background of the world (a grey frame is judged by which side it leans to)."""
    frame = torch.ones(images.shape[-2:], dtype=torch.bool)
    frame[1:-1, 1:-1] = False
    mean = images[:, :, frame].mean(-1)  # [B, 3]
    names = list(BACKGROUNDS)
    refs = torch.tensor([BACKGROUNDS[n] for n in names])  # [K, 3]
    nearest = (mean[:, None, :] - refs[None]).abs().sum(-1).argmin(-1)
    return nearest == torch.tensor([names.index(b) for b in backgrounds])
