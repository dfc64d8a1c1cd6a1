"""Diffusion checkpoints in standard formats: `safegrpo export` writes a diffusers pipeline folder
(model_index.json) that plain `DiffusionPipeline.from_pretrained` loads after a move, with the
trained LoRA fused into the UNet; the checkpoint's LoRA loads with `pipe.load_lora_weights`;
resume reads the diffusers format and the older bare state dict."""

import copy
import json
import shutil
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from safegrpo.cli import app
from safegrpo.policies.diffusion.lora_format import LORA_FILE, OLD_LORA_FILE
from safegrpo.policies.diffusion.policy import (
    UNET_ATTENTION,
    DiffusionPolicy,
    DiffusionPolicyConfig,
)
from safegrpo.policies.diffusion.tiny import build_tiny_pipeline
from safegrpo.policies.lm import LoRAConfig
from tests.training.test_diffusion_grpo import make

CORPUS = ["a red square", "a blue circle"] * 20
# alpha != r: a loader that ignored the recorded alpha would apply the LoRA at the wrong scale
LORA = LoRAConfig(r=4, alpha=8, target_modules=UNET_ATTENTION)
CASES = {"lora-pixel-space": (LORA, False, True),
         "full-unet-vae-bare-components": (LoRAConfig(r=0), True, False)}


@pytest.fixture(scope="module", params=list(CASES))
def run(request, tmp_path_factory):
    """A GRPO checkpoint (step_000001) of a tiny pipeline; 'bare components' is a pipeline folder
    without model_index.json, like shapes worlds built before it was written."""
    lora, vae, index = CASES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    pipe = build_tiny_pipeline(root / "pipeline", CORPUS, vae=vae)
    if not index:
        (pipe / "model_index.json").unlink()
    pol, tr = make(str(pipe), root / "grpo", lora=lora, num_steps=2, steps=1)
    g = torch.Generator().manual_seed(0)  # a stand-in for training: move every trainable weight
    with torch.no_grad():
        for p in pol.trainable_parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    tr.history.append({"step": 0})  # a resumable state holds its steps' records
    tr.save(1)  # the trainer's own checkpoint writer
    return pipe, root / "grpo" / "checkpoints" / "step_000001", pol


def merged_unet_state(unet):
    """The policy's UNet with each LoRA layer merged by peft itself (W + alpha/r * B A)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    unet = copy.deepcopy(unet)
    for m in unet.modules():
        if isinstance(m, BaseTunerLayer):
            m.merge()
    return {k.replace("base_layer.", ""): v for k, v in unet.state_dict().items()
            if "lora_" not in k}


def test_export_is_a_diffusers_pipeline_with_the_trained_unet(run, tmp_path):
    from diffusers import (
        DDIMScheduler,
        DiffusionPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )

    pipe_path, ckpt, pol = run
    r = CliRunner().invoke(app, ["export", str(ckpt), str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    moved = tmp_path / "elsewhere" / "pipeline"
    shutil.move(tmp_path / "out", moved)
    index = json.loads((moved / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert index["scheduler"] == ["diffusers", "DDIMScheduler"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    rec = json.loads((moved / "safegrpo_export.json").read_text())
    assert rec["load_kwargs"] == {} and rec["identity_vae"] == (pol.vae is None)
    exported = DiffusionPipeline.from_pretrained(moved)  # the README's one line, as written
    assert isinstance(exported, StableDiffusionPipeline) and exported.vae is not None
    got, want = exported.unet.state_dict(), merged_unet_state(pol.unet)
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    base = UNet2DConditionModel.from_pretrained(pipe_path, subfolder="unet").state_dict()
    assert any(not torch.equal(got[k], base[k]) for k in base)  # the update is in
    sched = DDIMScheduler.from_pretrained(moved, subfolder="scheduler")
    assert sched.config == DDIMScheduler.from_pretrained(pipe_path, subfolder="scheduler").config
    # the export is also a base safegrpo samples from exactly like the trained policy
    again = DiffusionPolicy(DiffusionPolicyConfig(model=str(moved), num_steps=2,
                                                  lora=LoRAConfig(r=0)))
    a, b = again.rollout(["a red square"], 2, seed=3), pol.rollout(["a red square"], 2, seed=3)
    torch.testing.assert_close(a.latents, b.latents, atol=1e-4, rtol=1e-4)
    assert rec["sampling"]["num_inference_steps"] == 2 and rec["sampling"]["eta"] == 1.0
    images = exported("a red square", generator=torch.Generator().manual_seed(0),
                      **rec["sampling"]).images
    side = exported.unet.config.sample_size * exported.vae_scale_factor
    assert len(images) == 1 and images[0].size == (side, side)
    if pol.vae is None:  # the identity VAE decodes the denoised pixels, nothing else
        call = dict(rec["sampling"], prompt="a red square")
        lat = exported(**call, generator=torch.Generator().manual_seed(0),
                       output_type="latent").images
        arr = exported(**call, generator=torch.Generator().manual_seed(0),
                       output_type="pt").images
        torch.testing.assert_close(arr, (lat / 2 + 0.5).clamp(0, 1), atol=1e-5, rtol=0)


def test_checkpoint_lora_loads_with_load_lora_weights(run):
    from diffusers import DiffusionPipeline

    pipe_path, ckpt, pol = run
    if pol.cfg.lora.r == 0:
        pytest.skip("full-UNet checkpoint: no LoRA")
    pipe = DiffusionPipeline.from_pretrained(pipe_path, **({} if pol.vae else {"vae": None}))
    pipe.load_lora_weights(str(ckpt / "policy"))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, *pol.latent_shape(), generator=g)
    t = torch.tensor([900, 300])
    emb = pol.encode_prompts(["a red square", "a blue circle"])
    with torch.no_grad():
        theirs = pipe.unet(x, t, encoder_hidden_states=emb).sample
        ours = pol.unet(x, t, encoder_hidden_states=emb).sample
        with pol.reference() as ref:
            before = ref(x, t, encoder_hidden_states=emb).sample
    torch.testing.assert_close(theirs, ours, atol=1e-6, rtol=1e-5)
    assert (ours - before).abs().max() > 1e-5  # the trained LoRA is not a no-op


def test_resume_reads_both_formats_and_export_names_the_old_one(tmp_path):
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    pipe = str(build_tiny_pipeline(tmp_path / "pipeline", CORPUS))
    cfg = replace(DiffusionPolicyConfig(model=pipe, num_steps=2), lora=LORA)
    pol = DiffusionPolicy(cfg)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in pol.trainable_parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    pol.save(tmp_path / "new")
    assert (tmp_path / "new" / LORA_FILE).exists()
    assert not (tmp_path / "new" / OLD_LORA_FILE).exists()
    (tmp_path / "old").mkdir()  # what checkpoints held before: the bare peft state dict
    save_file(get_peft_model_state_dict(pol.unet), tmp_path / "old" / OLD_LORA_FILE)
    want = dict(pol.unet.named_parameters())
    for folder in ("new", "old"):
        again = DiffusionPolicy(cfg)
        again.load_trainable(tmp_path / folder)
        got = dict(again.unet.named_parameters())
        assert all(torch.equal(got[k], want[k]) for k in want), folder
    r = CliRunner().invoke(app, ["export", str(tmp_path / "old"), str(tmp_path / "x")])
    assert r.exit_code == 1 and "pass it with --base" in r.output, r.output
    r = CliRunner().invoke(app, ["export", str(tmp_path / "old"), str(tmp_path / "x"),
                                 "--base", str(tmp_path / "no_such_pipeline")])
    assert r.exit_code == 1 and "no_such_pipeline does not exist" in r.output, r.output
    r = CliRunner().invoke(app, ["export", str(tmp_path / "old"), str(tmp_path / "x"),
                                 "--base", pipe])
    assert r.exit_code == 1 and "old bare format" in r.output and "resume" in r.output, r.output
    assert not (tmp_path / "x").exists()


def test_identity_vae_round_trips_pixels():
    from safegrpo.policies.diffusion.identity_vae import identity_vae

    vae = identity_vae(3, 16)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(vae.decode(x).sample, x, atol=1e-5, rtol=0)
        torch.testing.assert_close(vae.encode(x).latent_dist.mode(), x, atol=1e-5, rtol=0)
    assert vae.config.scaling_factor == 1.0 and len(vae.config.block_out_channels) == 1
