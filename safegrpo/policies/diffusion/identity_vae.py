"""A diffusers ``AutoencoderKL`` that is the identity (to float precision), for pixel-space
pipelines such as the shapes world: the exported folder then has a VAE, so
``DiffusionPipeline.from_pretrained(folder)`` loads with no extra argument and ``pipe(prompt)``
returns PIL images of the pixels the UNet denoised.

No training: the weights are set by hand. One block of ``2n + 2`` channels for ``n`` image
channels; every resnet and attention block adds a zero residual (their output convolutions are
zero). ``conv_in`` writes ``x, -x`` per channel plus two ballast channels ``+K, -K``; the
single-group GroupNorm after the blocks then sees mean 0 and a standard deviation of ``K/2``
up to a relative ``O(1/K^2)`` (``K = 1000``), so scaling by ``K/2`` gives ``x`` back; an offset
of 30 puts SiLU in its linear range (sigmoid(29) = 1 to float32) and ``conv_out`` removes it.
The encoder mirrors this with a log-variance of -30, so ``encode(x).latent_dist.mode()`` is x.
``scaling_factor`` is 1 and, with one block, the pipeline's ``vae_scale_factor`` is 1.
"""

from __future__ import annotations

import torch

BALLAST = 1000.0
"""K: the ballast channels' magnitude (the GroupNorm statistics' independence from x)."""
OFFSET = 30.0
"""Shift into SiLU's linear range before ``conv_out`` (subtracted by its bias)."""


def _identity_path(conv_in, norm, conv_out, n: int, extra_out: float | None = None) -> None:
    """conv_in: n -> 2n + 2 channels; norm: GroupNorm(1, 2n + 2); conv_out: 2n + 2 -> n
    (or 2n with ``extra_out`` as the bias of channels n..2n-1: the encoder's log-variance)."""
    with torch.no_grad():
        for c in range(n):
            conv_in.weight[2 * c, c, 1, 1] = 1.0
            conv_in.weight[2 * c + 1, c, 1, 1] = -1.0
        conv_in.bias[2 * n] = BALLAST
        conv_in.bias[2 * n + 1] = -BALLAST
        norm.weight.fill_(BALLAST / 2)
        norm.bias.fill_(OFFSET)
        for c in range(n):
            conv_out.weight[c, 2 * c, 1, 1] = 1.0
            conv_out.bias[c] = -OFFSET
        if extra_out is not None:
            conv_out.bias[n:] = extra_out


def identity_vae(channels: int = 3, sample_size: int = 16):
    """An AutoencoderKL whose decode (and encode mode) returns its input, for images with
    ``channels`` channels (the pixel-space UNet's in_channels)."""
    from diffusers import AutoencoderKL

    width = 2 * channels + 2
    vae = AutoencoderKL(in_channels=channels, out_channels=channels, latent_channels=channels,
                        block_out_channels=(width,), layers_per_block=1, norm_num_groups=1,
                        down_block_types=("DownEncoderBlock2D",),
                        up_block_types=("UpDecoderBlock2D",), sample_size=sample_size,
                        scaling_factor=1.0)
    with torch.no_grad():
        for p in vae.parameters():
            p.zero_()
        for conv in (vae.quant_conv, vae.post_quant_conv):
            k = conv.weight.shape[0]
            conv.weight[:, :, 0, 0] = torch.eye(k)
    _identity_path(vae.decoder.conv_in, vae.decoder.conv_norm_out, vae.decoder.conv_out,
                   channels)
    _identity_path(vae.encoder.conv_in, vae.encoder.conv_norm_out, vae.encoder.conv_out,
                   channels, extra_out=-30.0)
    return vae.eval()
