"""A recipe run's config, SFT metrics, headline rates, tables and plots reach the trackers; a
tracker that cannot start stops the run before any stage, in one line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from safegrpo.recipes.base import RECIPES, RunContext, Stage, discover, run_stages
from safegrpo.training.grpo_config import GRPOConfig
from safegrpo.training.logging import PREFLIGHT, MetricLogger
from safegrpo.training.run_tracker import TrackerError
from tests.training.test_trackers import RecordingTracker, recording  # noqa: F401 (fixture)


class FileTracker(RecordingTracker):
    """Also keeps the files it is given (as MLflow's ``log_artifact`` does)."""

    name = "files"

    def __init__(self, run_name, **kwargs):
        super().__init__(run_name, **kwargs)
        self.files = []

    def log_artifact(self, path, artifact_path=None):
        self.files.append(Path(path).name)


class BrokenTracker(RecordingTracker):
    name = "broken"

    def start(self):
        raise ConnectionError("store at file:///nowhere\nis unsupported")


@dataclass(frozen=True)
class StubConfig:
    out_dir: str = "runs/stub"
    """Output folder."""
    seed: int = 0
    """Seed."""
    grpo: GRPOConfig = field(default_factory=lambda: GRPOConfig(report_to=("none",)))
    """Trainer section (its report_to names the trackers)."""


CALLS: list[str] = []


def _sft(ctx: RunContext) -> None:
    CALLS.append("sft")
    log = MetricLogger(Path(ctx.cfg.out_dir) / "sft")  # SFT's own logger: metrics.jsonl only
    log.log(1, {"sft/loss": 0.5, "sft/parse_rate": 0.25})


def _report(ctx: RunContext) -> None:
    out = Path(ctx.cfg.out_dir)
    (out / "eval_headline.md").write_text("| method | rate |\n|---|---|\n| grpo | 0.1 |\n")
    from PIL import Image

    Image.new("RGB", (4, 3), "red").save(out / "reward_curve.png")
    ctx.summary = {"headline": {"eval": {"held_out/grpo": {"unsafe_pass_through": 0.125}},
                                "stop_reason": None}}


class StubRecipe:
    name, config_cls, preset, outputs, composes = "stub", StubConfig, None, "", ()

    def stages(self, cfg):
        return [Stage("sft", _sft, "train", _sft), Stage("report", _report, "report")]

    def render(self, summary):
        return "stub"


@pytest.fixture
def trackers(monkeypatch, recording):  # noqa: F811
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    monkeypatch.setitem(LOGGER_TYPE_TO_CLASS, "files", FileTracker)
    monkeypatch.setitem(LOGGER_TYPE_TO_CLASS, "broken", BrokenTracker)
    CALLS.clear()
    return recording


def test_recipe_run_sends_config_sft_headline_and_files(tmp_path, trackers):
    cfg = StubConfig(out_dir=str(tmp_path), grpo=GRPOConfig(report_to=("files",), lr=0.003))
    (tmp_path).mkdir(exist_ok=True)
    run_stages(StubRecipe(), RunContext(cfg, "train"))
    (run,) = trackers.runs
    assert run.config["grpo/lr"] == 0.003 and run.config["out_dir"] == str(tmp_path)
    logged = {k: v for _, values in run.logged for k, v in values.items()}
    assert logged["sft/loss"] == 0.5 and logged["sft/parse_rate"] == 0.25
    assert logged["headline/eval/held_out/grpo/unsafe_pass_through"] == 0.125
    assert sorted(run.files) == ["eval_headline.md", "reward_curve.png"]
    assert run.finished


def test_tracker_that_cannot_start_stops_before_any_stage(tmp_path, trackers):
    cfg = StubConfig(out_dir=str(tmp_path), grpo=GRPOConfig(report_to=("broken",)))
    with pytest.raises(TrackerError, match=r"^report_to: tracker 'broken' cannot start "
                                           r"\(ConnectionError: store at file:///nowhere is"):
        run_stages(StubRecipe(), RunContext(cfg, "train"))
    assert CALLS == []  # nothing ran (SFT used to finish first, then the tracker crashed)


def test_cli_reports_a_broken_tracker_in_one_line(tmp_path, trackers):
    from safegrpo.cli import app

    discover()
    RECIPES.register("stub")(StubRecipe)
    try:
        res = CliRunner().invoke(app, ["train", "stub", "--set", f"out_dir={tmp_path}",
                                       "--set", "grpo.report_to=[broken]"])
    finally:
        RECIPES.unregister("stub")
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "report_to: tracker 'broken' cannot start" in " ".join(res.output.split())
    assert CALLS == []


def test_unreachable_tracker_store_is_a_config_error(monkeypatch, trackers):
    def unreachable():
        raise OSError("unsupported URI './mlruns' for model registry")

    monkeypatch.setitem(PREFLIGHT, "files", unreachable)
    with pytest.raises(ValueError, match=r"report_to: tracker 'files' cannot start \(OSError"):
        GRPOConfig(report_to=("files",))
    assert GRPOConfig(report_to=("recording",)).report_to == ("recording",)
