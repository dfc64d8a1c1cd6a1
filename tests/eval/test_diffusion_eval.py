"""Image evaluation functions on hand-built images and fake judges with known outputs."""

import random

import pytest
import torch

from safegrpo.eval import diffusion as ev
from safegrpo.worlds import shapes


def _solid(rgb, n=1, size=8):
    return torch.tensor(rgb).view(1, 3, 1, 1).expand(n, 3, size, size).clone()


def test_concept_rate_counts_images_at_threshold():
    imgs = torch.cat([_solid((0.9, 0.1, 0.1)), _solid((1.0, 1.0, 1.0)), _solid((1.0, 1.0, 1.0))])
    imgs[2, :, :2, :2] = torch.tensor([0.9, 0.1, 0.1]).view(3, 1, 1)  # 4 / 64 = 0.0625 red pixels
    out = ev.concept_rate(imgs, shapes.red_fraction, threshold=0.05)
    assert out["rate"] == pytest.approx(2 / 3) and out["n"] == 3
    assert out["mean_score"] == pytest.approx((1 + 0 + 0.0625) / 3)
    assert (ev.concept_rate(imgs, shapes.red_fraction, threshold=0.07)["rate"]
            == pytest.approx(1 / 3))


class FakeNude:
    classes = ("A", "B")

    def detect(self, images):
        return [[{"class": "A", "score": 0.9}, {"class": "B", "score": 0.5}], [],
                [{"class": "A", "score": 0.7}]]

    def report(self):
        return {"detector": "fake", "threshold": 0.45, "classes": list(self.classes)}


def test_nudity_counts_per_class_and_states_settings():
    out = ev.nudity_counts(FakeNude(), [None] * 3)
    assert out["counts"] == {"A": 2, "B": 1}
    assert out["images_flagged"] == 2 and out["flagged_rate"] == pytest.approx(2 / 3)
    assert out["threshold"] == 0.45 and out["classes"] == ["A", "B"]


def test_nudity_counts_real_nudenet_on_blank_images():
    pytest.importorskip("nudenet")
    from safegrpo.judges.visual import NudeNetJudge

    out = ev.nudity_counts(NudeNetJudge(threshold=0.3),
                           [_solid((0.5, 0.5, 0.5), size=64)[0]] * 2)
    assert (out["images_flagged"] == 0 and sum(out["counts"].values()) == 0
            and out["threshold"] == 0.3)


class FakeQ16:
    def per_category(self, images):
        return torch.tensor([[0.9, 0.1], [0.6, 0.7], [0.2, 0.3], [0.5, 0.49]])

    def category_names(self):
        return ["hate", "violence"]


def test_inappropriate_rates_per_category_and_any():
    out = ev.inappropriate_rates(FakeQ16(), [None] * 4, threshold=0.5)
    assert out["rates"] == {"hate": pytest.approx(0.75), "violence": pytest.approx(0.25)}
    assert out["any"] == pytest.approx(0.75)


class FakeEmbedder:
    def embed(self, texts):
        return torch.tensor([[1.0, 0.0] if t == "x" else [0.0, 2.0] for t in texts])

    def embed_images(self, images):
        return torch.stack(list(images))


def test_alignment_is_mean_cosine():
    imgs = [torch.tensor([1.0, 1.0]), torch.tensor([0.0, 3.0])]
    out = ev.alignment(FakeEmbedder(), ["x", "y"], imgs)
    assert out["mean"] == pytest.approx((2**-0.5 + 1.0) / 2, abs=1e-6)
    with pytest.raises(ValueError, match="2 prompts for 1 images"):
        ev.alignment(FakeEmbedder(), ["x", "y"], imgs[:1])


def test_image_grid_png_and_row_mismatch(tmp_path):
    p = ev.image_grid({"a": torch.rand(3, 3, 8, 8), "b": torch.rand(3, 3, 8, 8)},
                      tmp_path / "g.png", col_labels=["1", "2", "3"])
    assert p.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="same number"):
        ev.image_grid({"a": torch.rand(3, 3, 8, 8), "b": torch.rand(2, 3, 8, 8)},
                      tmp_path / "h.png")


def test_dominant_color_recovers_every_rendered_colour():
    rng = random.Random(0)
    for color in shapes.COLORS:
        for shape in shapes.SHAPES:
            for bg in shapes.BACKGROUNDS:
                img = shapes.render(color, shape, bg, rng).unsqueeze(0)
                assert shapes.dominant_color(img) == [color], (color, shape, bg)
    assert shapes.dominant_color(_solid((1.0, 1.0, 1.0), size=16)) == ["none"]
