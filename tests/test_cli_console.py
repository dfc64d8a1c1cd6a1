"""The console: a headline that fits 80 columns, help without RST markup, text that follows the
terminal width, and progress displays that are shown on a terminal only."""

from __future__ import annotations

import io
import re

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from safegrpo.cli import app
from safegrpo.core import progress

METHODS = ["base_prompted", "sft_only", "keyword_filter", "always_reject", "judge_threshold",
           "grpo"]


def _moderation_summary() -> dict:
    rows = []
    for split in ("holdout", "handwritten"):
        for m in METHODS:
            for tier in ("T1", "T2", "T3", "benign", "trap", "all"):
                rows.append({"split": split, "method": m, "tier": tier, "n": 40,
                             "allow_rate": 0.25, "transform_rate": 0.125, "reject_rate": 0.5,
                             "parse_rate": 0.875, "mean_reward": 0.123,
                             "unsafe_pass_through": 0.333, "benign_over_refusal": 0.25,
                             "strict_pass_through": 0.5, "rewrite_unsafe_indep": None,
                             "rewrite_unsafe_train": 0.1, "distinct_rewrite_ratio": 1.0})
    return {"table": rows}


def test_moderation_headline_fits_80_columns_uncut():
    from safegrpo.recipes.moderation.demo import render_summary

    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(render_summary(_moderation_summary()))
    text = out.getvalue()
    assert "…" not in text  # the 14-column table cut 69 cells at 80 columns
    assert max(len(ln) for ln in text.splitlines()) <= 80
    for m in METHODS:
        assert re.search(rf"^\s*handwritten\s+{m}\s+0\.875\s+0\.333\s+0\.500\s+0\.250\s+-\s*$",
                         text, re.M), m


def _commands(cmd, path: list[str]):
    yield path
    if hasattr(cmd, "commands"):
        for name, sub in cmd.commands.items():
            yield from _commands(sub, [*path, name])


def test_help_texts_have_no_rst_markup():
    runner = CliRunner()
    paths = list(_commands(typer.main.get_command(app), []))
    assert len(paths) > 8
    for path in paths:
        res = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
        assert res.exit_code == 0, path
        assert "``" not in res.output, path


def test_config_says_which_defaults_and_follows_the_terminal_width():
    runner = CliRunner()
    res = runner.invoke(app, ["config", "moderation", "--explain"], env={"COLUMNS": "60"})
    first = res.output.splitlines()[0]
    assert "library defaults, not the demo's preset" in first and "moderation_demo.yaml" in first
    doc_lines = [ln for ln in res.output.splitlines() if ln.startswith("    ")]
    assert doc_lines and max(len(ln) for ln in doc_lines) <= 60
    res = runner.invoke(app, ["recipes"], env={"COLUMNS": "60"})
    assert res.exit_code == 0 and max(len(ln) for ln in res.output.splitlines()) <= 60


def test_phase_shows_counts_and_eta_on_a_terminal(terminal):
    with progress.phase("SFT", 4) as bar:
        for _ in range(4):
            bar.advance(1, info="loss 0.5")
    text = terminal.getvalue()
    assert "SFT" in text and "4/4" in text and "ETA" in text and "loss 0.5" in text


@pytest.mark.parametrize("how", ["quiet", "ci", "pipe"])
def test_phase_is_silent_when_quiet_in_ci_or_piped(terminal, monkeypatch, how):
    if how == "quiet":
        progress.set_quiet(True)
        monkeypatch.setitem(progress._state, "quiet", True)  # restored after the test
    elif how == "ci":
        monkeypatch.setenv("CI", "true")
    else:
        monkeypatch.setitem(progress._state, "console", Console(file=terminal, width=100))
    assert list(progress.track(range(3), "eval")) == [0, 1, 2]
    assert terminal.getvalue() == ""


def test_quiet_flag_reaches_the_progress_display(monkeypatch):
    monkeypatch.setitem(progress._state, "quiet", False)
    CliRunner().invoke(app, ["--quiet", "recipes"])
    assert progress._state["quiet"] is True


def test_sft_and_nested_phases_share_one_display(terminal, tiny_lm_path, tmp_path):
    from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig
    from safegrpo.training.sft import SFTConfig, sft_train

    pol = LMPolicy(LMPolicyConfig(model=tiny_lm_path, lora=LoRAConfig(r=2), max_new_tokens=2))
    pairs = [("Prompt: a\nJSON:", '{"decision": "allow"}')] * 6
    with progress.phase("outer", 1):
        sft_train(pol, pairs, SFTConfig(epochs=2, batch_size=4, out_dir=str(tmp_path)))
    assert "SFT" in terminal.getvalue() and "4/4" in terminal.getvalue()
