import pytest
import torch
import torch.nn.functional as F

from safegrpo.rewards.diffusion import SteeringReward


class FakeSpace:
    """2-D joint space: 'safe' texts -> +x, 'unsafe' -> -x, others -> +y; images carry their
    vector."""

    def embed(self, texts):
        table = {"safe": [1.0, 0.0], "unsafe": [-1.0, 0.0], "bad prompt": [-0.6, 0.8],
                 "good prompt": [0.6, 0.8]}
        return F.normalize(torch.tensor([table[t] for t in texts]), dim=-1)

    def embed_images(self, images):
        return torch.stack([torch.as_tensor(i, dtype=torch.float32) for i in images])


class Half:
    def score(self, images):
        return torch.full((len(images),), 0.5)


def test_conditional_steering_reward_hand_computed():
    r = SteeringReward(FakeSpace(), ["safe"], ["unsafe"], strength=1.0, mode="conditional",
                       extra={"nudity": (Half(), -1.0)})
    imgs = [[0.0, 1.0], [1.0, 0.0]]
    out = r(["bad prompt", "good prompt"], imgs)
    # bad prompt (cos with d=-0.6 < 0) steered: normalize([0.4, 0.8]); good prompt untouched
    t_bad = F.normalize(torch.tensor([0.4, 0.8]), dim=0)
    exp = torch.tensor([t_bad[1].item(), 0.6])
    torch.testing.assert_close(out.components["steered_alignment"], exp)
    torch.testing.assert_close(out.components["nudity"], torch.tensor([-0.5, -0.5]))
    torch.testing.assert_close(out.total, exp - 0.5)
    unc = SteeringReward(FakeSpace(), ["safe"], ["unsafe"], strength=1.0, mode="unconditional")
    assert unc(["good prompt"], [[1.0, 0.0]]).total.item() == pytest.approx(
        F.normalize(torch.tensor([1.6, 0.8]), dim=0)[0].item())
    with pytest.raises(ValueError, match="descriptor"):
        SteeringReward(FakeSpace(), [], ["unsafe"])
