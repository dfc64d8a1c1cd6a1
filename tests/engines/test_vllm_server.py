"""vLLM server mode from the trainer's own env: a managed server in the vLLM venv
(policy.engine.python), LoRA adapters loaded at runtime as files, a base change restarts it.
Needs a venv with vLLM: SAFEGRPO_VLLM_PYTHON, or .venv-vllm/bin/python made by
`bash scripts/install_vllm.sh` (CI makes it); skipped otherwise, with that reason."""

import os
from pathlib import Path

import pytest
import torch

from tests.engines.conftest import PROMPTS, lora_policy, perturb_adapter

ROOT = Path(__file__).resolve().parents[2]
PY = os.environ.get("SAFEGRPO_VLLM_PYTHON", str(ROOT / ".venv-vllm" / "bin" / "python"))
pytestmark = pytest.mark.skipif(not Path(PY).exists(),
                                reason=f"no vLLM venv at {PY} (bash scripts/install_vllm.sh)")


def test_managed_server_follows_lora_updates_and_base_changes(peaked_lm_path, tmp_path):
    from safegrpo.policies.engines import EngineConfig

    ref = lora_policy(peaked_lm_path)
    eng = lora_policy(peaked_lm_path, EngineConfig(name="vllm", mode="server", python=PY,
                                                   work_dir=str(tmp_path)))
    try:
        before = eng.generate(PROMPTS, 1, seed=0, greedy=True)[2]
        assert torch.equal(before, ref.generate(PROMPTS, 1, seed=0, greedy=True)[2])
        perturb_adapter(ref, seed=3)
        perturb_adapter(eng, seed=3)
        after = eng.generate(PROMPTS, 1, seed=0, greedy=True)[2]
        assert torch.equal(after, ref.generate(PROMPTS, 1, seed=0, greedy=True)[2])
        assert not torch.equal(before, after)
        assert eng.engine.served == f"safegrpo-v{eng.version}"
        # a merge is a new base: the managed server restarts on it
        ref.merge_lora()
        eng.merge_lora()
        merged = eng.generate(PROMPTS, 1, seed=0, greedy=True)[2]
        assert torch.equal(merged, ref.generate(PROMPTS, 1, seed=0, greedy=True)[2])
        assert (tmp_path / f"base_v{eng.base_version}").exists()
        sampled = eng.generate(PROMPTS, 3, seed=4, logprobs=True)
        assert sampled[2].shape[0] == 9 and sampled[4].shape == sampled[2].shape
    finally:
        eng.close()
