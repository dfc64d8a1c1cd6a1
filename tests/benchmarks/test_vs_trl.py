"""Smoke test of benchmarks/vs_trl.py: every side runs and reports positive figures (no timing
assertions: the machine is shared)."""

import json

import pytest

from tests.script_module import load_script as _load


def load_script():
    return _load("benchmarks/vs_trl.py", "vs_trl_bench")


def test_all_sides_run_one_step_and_report(tmp_path, capsys):
    pytest.importorskip("trl")
    out = tmp_path / "r.json"
    res = load_script().main(["--steps", "1", "--prompts", "2", "--group-size", "2",
                              "--max-new-tokens", "4", "--threads", "1", "--hidden", "32",
                              "--layers", "1", "--vocab", "300", "--lora-r", "4",
                              "--sides", "floor,safegrpo,safegrpo_bf16_amp,trl,trl_bf16",
                              "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    sides = res["sides"]
    assert set(sides) == {"floor", "safegrpo", "safegrpo_bf16_amp", "trl", "trl_bf16"}
    assert sides["trl"]["global_steps"] == 2  # warm-up + 1 timed step
    for side, r in sides.items():
        assert r["steps"] == 1, side
        assert r["completion_len"] == [4, 4], side  # min_new_tokens forces T on every side
        assert r["tokens"] == 2 * 2 * 4, side
        assert r["steps_per_s"] > 0 and r["tokens_per_s"] > 0, side
        br = r["breakdown_s_per_step"]
        assert set(br) == {"generate", "logprob_fwd", "backward_step", "reward", "other"}
        assert br["generate"] > 0 and br["logprob_fwd"] > 0 and br["backward_step"] > 0, side
        assert sum(br.values()) == pytest.approx(1 / r["steps_per_s"]), side
    for side in ("safegrpo", "safegrpo_bf16_amp", "trl", "trl_bf16"):
        assert sides[side]["breakdown_s_per_step"]["reward"] > 0, side
    assert sides["safegrpo"]["rows_trained_per_step"] > 0
    assert set(res["ratios"]) == {
        "safegrpo_over_trl_tokens_per_s", "safegrpo_bf16_amp_over_trl_tokens_per_s",
        "trl_bf16_over_trl_tokens_per_s", "safegrpo_over_floor_step_time",
        "trl_over_floor_step_time", "same_precision_safegrpo_over_trl_tokens_per_s",
        "same_precision_safegrpo_bf16_amp_over_trl_bf16_tokens_per_s"}
    assert all(v > 0 for v in res["ratios"].values())
    printed = capsys.readouterr().out
    assert "safegrpo_over_trl_tokens_per_s" in printed and "floor" in printed


def test_bad_arguments_name_the_field():
    mod = load_script()
    with pytest.raises(SystemExit):
        mod.main(["--group-size", "1"])
    with pytest.raises(SystemExit):
        mod.main(["--sides", "floor,vllm"])
