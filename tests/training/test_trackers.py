"""report_to through accelerate's trackers: TensorBoard, none, a custom tracker, config errors."""

import json
import math

import pytest
from accelerate import Accelerator
from accelerate.tracking import LOGGER_TYPE_TO_CLASS, GeneralTracker, get_available_trackers

from safegrpo.core.config import ConfigError, from_dict, load_config, to_dict
from safegrpo.training.diffusion_grpo import DiffusionGRPOConfig
from safegrpo.training.grpo_config import GRPOConfig
from safegrpo.training.logging import DeprecatedFieldWarning, MetricLogger, tracker_args


class RecordingTracker(GeneralTracker):
    """A custom accelerate tracker that keeps everything it is given."""

    name = "recording"
    requires_logging_directory = False
    main_process_only = False
    runs: list = []

    def __init__(self, run_name, **kwargs):
        super().__init__()
        self.run_name, self.config, self.logged, self.finished = run_name, None, [], False
        RecordingTracker.runs.append(self)

    @property
    def tracker(self):
        return self

    def store_init_configuration(self, values):
        self.config = dict(values)

    def log(self, values, step=None, **kwargs):
        self.logged.append((step, dict(values)))

    def finish(self):
        self.finished = True


@pytest.fixture
def recording(monkeypatch):
    """RecordingTracker registered under "recording" for this test only."""
    monkeypatch.setitem(LOGGER_TYPE_TO_CLASS, "recording", RecordingTracker)
    monkeypatch.setattr(RecordingTracker, "runs", [])
    return RecordingTracker


def tb_scalars(root) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] of every TensorBoard run under ``root`` (purged steps dropped)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for d in sorted({p.parent for p in root.rglob("events.out.tfevents*")}):
        acc = EventAccumulator(str(d), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def accelerator(report_to, out):
    return Accelerator(cpu=True, mixed_precision="no", **tracker_args(report_to, out))


def test_tensorboard_events_via_accelerate(tmp_path):
    log = MetricLogger(tmp_path, accelerator(("tensorboard",), tmp_path), project="proj",
                       hparams={"lr": 0.1})
    log.start(0)
    log.log(0, {"reward/total": 0.5, "n": 3, "gone": float("nan"), "note": "text"})
    log.log(1, {"reward/total": 0.75, "n": 4, "gone": 1.0, "note": "text"})
    log.close()
    assert list((tmp_path / "tb" / "proj").glob("events.out.tfevents*"))
    scalars = tb_scalars(tmp_path / "tb")
    assert scalars["reward/total"] == [(0, 0.5), (1, 0.75)]
    assert scalars["n"] == [(0, 3.0), (1, 4.0)]
    assert scalars["gone"] == [(1, 1.0)]  # NaN is not sent to trackers
    recs = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert recs[0] == {"step": 0, "reward/total": 0.5, "n": 3, "gone": None, "note": "text"}


def test_resume_purges_later_tensorboard_steps(tmp_path):
    log = MetricLogger(tmp_path, accelerator(("tensorboard",), tmp_path))
    for step in range(3):
        log.log(step, {"x": float(step)})
    log.close()
    again = MetricLogger(tmp_path, accelerator(("tensorboard",), tmp_path))
    again.start(1)  # resumed from the checkpoint of step 1: steps 1 and 2 are logged again
    again.log(1, {"x": 10.0})
    again.close()
    # the resumed writer tells TensorBoard to drop steps >= 1 of the earlier file (purge_step);
    # per file, since two files written in the same second may not list in write order
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
    from tensorboard.compat.proto.event_pb2 import SessionLog

    files = {}
    for p in (tmp_path / "tb").rglob("events.out.tfevents*"):
        events = list(LegacyEventFileLoader(str(p)).Load())  # raw events
        (start,) = [e.step for e in events if e.session_log.status == SessionLog.START]
        files[start] = [(e.step, v.simple_value) for e in events for v in e.summary.value]
    assert files == {0: [(0, 0.0), (1, 1.0), (2, 2.0)], 1: [(1, 10.0)]}
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1]


def test_none_writes_only_jsonl(tmp_path):
    cfg = GRPOConfig(report_to="none", out_dir=str(tmp_path))
    acc = accelerator(cfg.report_to, tmp_path)
    assert acc.log_with == []
    log = MetricLogger(tmp_path, acc)
    log.log(0, {"x": 1.0})
    log.close()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["metrics.jsonl"]


def test_custom_tracker_receives_the_trainer_metrics(tiny_lm_path, tmp_path, recording):
    from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig
    from safegrpo.training.grpo import GRPOTrainer
    from tests.training.fake_task import VowelTask

    pol = LMPolicy(LMPolicyConfig(model=tiny_lm_path, lora=LoRAConfig(r=4), max_new_tokens=8))
    cfg = GRPOConfig(steps=2, prompts_per_step=2, group_size=4, minibatch_size=4, lr=1e-2,
                     out_dir=str(tmp_path), save_every=0, report_to=("tensorboard", "recording"),
                     tracker_project="demo")
    GRPOTrainer(pol, VowelTask(), cfg).train()
    (run,) = recording.runs
    assert run.run_name == "demo" and run.finished
    assert run.config["lr"] == 1e-2 and run.config["report_to"] == str(("tensorboard", "recording"))
    recs = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [step for step, _ in run.logged] == [r["step"] for r in recs] == [0, 1]
    for (_, values), rec in zip(run.logged, recs, strict=True):
        numbers = {k: v for k, v in rec.items() if k != "step" and isinstance(v, int | float)}
        assert values.keys() == numbers.keys() and "reward/total" in values
        for k, v in numbers.items():
            assert values[k] == pytest.approx(v, rel=1e-12), k
    tb = tb_scalars(tmp_path / "tb" / "demo")
    assert [s for s, _ in tb["reward/total"]] == [0, 1]
    assert [v for _, v in tb["reward/total"]] == pytest.approx([r["reward/total"] for r in recs],
                                                               rel=1e-6)


def test_unknown_tracker_is_a_config_error():
    from safegrpo.recipes.moderation.pipeline import ModerationRecipeConfig

    with pytest.raises(ConfigError, match=r"grpo: report_to: unknown tracker 'tensorbord'; "
                                          r"valid: .*"
                                          r"tensorboard.*wandb"):
        load_config(ModerationRecipeConfig, None, ["grpo.report_to=[tensorbord]"])
    with pytest.raises(ValueError, match="'none' cannot be combined"):
        DiffusionGRPOConfig(report_to=("none", "tensorboard"))


def test_tracker_without_its_package_is_a_config_error(monkeypatch):
    import accelerate.tracking

    monkeypatch.setattr(accelerate.tracking, "get_available_trackers", lambda: [])
    with pytest.raises(ConfigError, match=r"report_to: tracker 'tensorboard' needs the "
                                          r"'tensorboard' package.*pip install tensorboard"):
        load_config(GRPOConfig, None, ["report_to=tensorboard"])
    with pytest.raises(ValueError, match=r"'comet_ml' needs the 'comet-ml' package"):
        GRPOConfig(report_to=["comet_ml"])


def test_a_really_missing_tracker_package():
    installed = {str(t) for t in get_available_trackers()}
    missing = next((n for n in ("wandb", "mlflow", "trackio") if n not in installed), None)
    if missing is None:
        pytest.skip("wandb, mlflow and trackio are all installed")
    with pytest.raises(ValueError, match=f"needs the '{missing}' package"):
        GRPOConfig(report_to=(missing,))


def test_report_to_forms_and_all(tmp_path, recording):
    assert GRPOConfig(report_to="tensorboard, recording").report_to == ("tensorboard", "recording")
    assert load_config(GRPOConfig, None, ["report_to=none"]).report_to == ("none",)
    cfg = GRPOConfig(report_to="all")
    assert "tensorboard" in [str(t) for t in accelerator(cfg.report_to, tmp_path).log_with]


@pytest.mark.parametrize("cls", [GRPOConfig, DiffusionGRPOConfig])
def test_deprecated_tensorboard_flag_maps_to_report_to(cls, recording):
    with pytest.warns(DeprecatedFieldWarning, match=r"use report_to: \[none\]"):
        off = cls(tensorboard=False)
    assert off.report_to == ("none",) and off.tensorboard is None
    with pytest.warns(DeprecatedFieldWarning):
        assert cls(tensorboard=False, report_to=("tensorboard", "recording")).report_to == (
            "recording",)
    with pytest.warns(DeprecatedFieldWarning, match=r"use report_to: \[tensorboard\]"):
        assert cls(tensorboard=True, report_to="none").report_to == ("tensorboard",)
    with pytest.warns(DeprecatedFieldWarning):
        from_yaml = load_config(cls, None, ["tensorboard=false"])
    assert from_yaml == off and from_dict(cls, to_dict(off)) == off  # a saved config reloads


def test_nan_free_scalars_only(tmp_path, recording):
    log = MetricLogger(tmp_path, accelerator(("recording",), tmp_path))
    log.log(3, {"a": 1, "b": float("nan"), "c": "s", "d": math.inf})
    log.close()
    (run,) = recording.runs
    assert run.logged == [(3, {"a": 1, "d": math.inf})] and run.config is None


def test_trackers_finish_when_a_step_raises(tiny_lm_path, tmp_path, recording, monkeypatch):
    from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig
    from safegrpo.training.grpo import GRPOTrainer
    from tests.training.fake_task import VowelTask

    pol = LMPolicy(LMPolicyConfig(model=tiny_lm_path, lora=LoRAConfig(r=4), max_new_tokens=8))
    cfg = GRPOConfig(steps=2, prompts_per_step=2, group_size=4, minibatch_size=4,
                     out_dir=str(tmp_path), save_every=0, report_to=("recording",))
    trainer = GRPOTrainer(pol, VowelTask(), cfg)

    def boom(step):
        raise RuntimeError("reward server down")

    monkeypatch.setattr(trainer, "step", boom)
    with pytest.raises(RuntimeError, match="reward server down"):
        trainer.train()
    (run,) = recording.runs
    assert run.finished  # the wandb/mlflow run is closed, not left dangling
