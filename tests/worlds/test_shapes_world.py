"""The shapes world's captions and its independent image judge (shape CNN, background frame)."""

import random

import pytest
import torch
import torch.nn.functional as F

from safegrpo.worlds import shapes
from safegrpo.worlds.shape_judge import CLASSES, background_match, train_shape_judge


def test_every_caption_is_described_back_and_phrasings_are_innermost():
    rows = shapes.all_prompts()
    assert len(rows) == 6 * 4 * 2 * len(shapes.TEMPLATES) == len({p for p, *_ in rows})
    for p, c, s, b in rows:
        assert shapes.describe(p) == (c, s, b)
    # every 4th caption is the last phrasing: the recipe's split holds out a wording
    assert all(p == shapes.prompt_of(c, s, b, 3) for p, c, s, b in rows[3::4])
    with pytest.raises(KeyError, match="not a caption"):
        shapes.describe("a red dog")


def test_background_match_reads_the_frame():
    rng = random.Random(0)
    imgs = torch.stack([shapes.render("blue", "circle", "black", rng),
                        shapes.render("blue", "circle", "white", rng)])
    assert background_match(imgs, ["black", "white"]).tolist() == [True, True]
    assert background_match(imgs, ["white", "black"]).tolist() == [False, False]
    # a slightly lifted black still reads black; the grey-green the README's grid shows after
    # GRPO on black backgrounds leans to white: the caption's background is lost
    lifted = imgs[:1] + 0.2
    greened = imgs[:1] * 0 + torch.tensor([0.5, 0.62, 0.45]).view(1, 3, 1, 1)
    assert background_match(torch.cat([lifted, greened]), ["black"] * 2).tolist() == [True, False]


@pytest.fixture(scope="module")
def judge():
    return train_shape_judge(n_train=3000, epochs=6, seed=0, n_test=300)


def test_shape_judge_reads_shapes_and_rejects_blobs(judge):
    assert judge.accuracy > 0.6  # 5 classes: chance is 0.2
    rng = random.Random(7)
    combos = [(c, s, b) for _, c, s, b in shapes.all_prompts()[::4]]
    imgs = torch.stack([shapes.render(c, s, b, rng) for c, s, b in combos])
    sharp = judge.shape_fidelity(imgs, [s for _, s, _ in combos])
    assert sharp > 0.6
    # the exploit it exists for: shapes dissolved into blobs keep their hue (the colour metrics
    # still pass) but are no longer the captioned shape
    blobs = F.interpolate(F.avg_pool2d(imgs, 4), size=16, mode="bilinear")
    assert shapes.dominant_color(blobs[:8]) == shapes.dominant_color(imgs[:8])
    assert judge.shape_fidelity(blobs, [s for _, s, _ in combos]) < sharp - 0.3
    assert set(judge.predict(torch.rand(6, 3, 16, 16))) <= set(CLASSES)
