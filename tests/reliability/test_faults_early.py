"""Faults end in one line, early: a bad config value, an unusable out_dir, a bad or busy scorer
port and an empty run folder under `eval` are refused before any model is built; a disk that
fills up while a checkpoint is written is one line naming the cause, and the previous checkpoint
stays usable."""

import errno
import json
import socket
import time

import pytest
import torch
from typer.testing import CliRunner

from safegrpo.cli import app
from safegrpo.training.checkpoint import CheckpointError, latest_checkpoint
from tests.training.test_grpo import make, trainable

pytestmark = pytest.mark.timeout(120)


def _invoke(*args: str):
    t = time.perf_counter()
    out = CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})
    return out, time.perf_counter() - t


def _box_line(out) -> str:
    """The usage error box's message; it must fit on one line (the terminal is wide enough)."""
    lines = [ln.strip("│ ") for ln in out.output.splitlines() if ln.startswith("│")]
    assert len(lines) == 1, out.output
    return lines[0]


@pytest.fixture
def no_heavy_work(monkeypatch):
    """Any stage running (a model build, an SFT) fails the test: the fault must be found first."""
    import safegrpo.recipes.base as base

    def boom(*a, **k):
        raise AssertionError("stages ran before the fault was reported")

    monkeypatch.setattr(base, "run_stages", boom)


@pytest.mark.parametrize("value", ["nan", ".inf", "-.inf"])
def test_non_finite_config_value_is_refused_at_load(no_heavy_work, value):
    out, dt = _invoke("train", "redteam", "--set", f"training.lr={value}")
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert "training.lr: expected a finite number" in _box_line(out)
    assert dt < 10


def test_out_dir_under_a_file_or_a_file_is_refused(no_heavy_work, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out, _ = _invoke("train", "redteam", "--set", f"out_dir={blocker}/run")
    assert out.exit_code == 2 and "Not a directory" in _box_line(out)
    assert f"out_dir {blocker}/run is not writable" in _box_line(out)
    out, _ = _invoke("demo", "redteam", "--out-dir", str(blocker))
    assert out.exit_code == 2 and f"out_dir {blocker} is a file" in _box_line(out)


def test_read_only_out_dir_is_refused(no_heavy_work, tmp_path, monkeypatch):
    """Root ignores permission bits, so the read-only file system is simulated at the write."""
    import tempfile

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", read_only)
    out, _ = _invoke("train", "redteam", "--set", f"out_dir={tmp_path / 'run'}")
    assert out.exit_code == 2 and "is not writable: Read-only file system" in _box_line(out)


def test_eval_of_an_empty_folder_fails_before_setup(tmp_path, monkeypatch):
    import safegrpo.recipes.redteam.demo as demo

    def setup(ctx):
        raise AssertionError("the setup stage (model builds) ran before the folder was checked")

    monkeypatch.setattr(demo, "_setup", setup)
    out, dt = _invoke("eval", "redteam", "--set", f"out_dir={tmp_path}")
    assert out.exit_code == 1 and "Traceback" not in out.output, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0] == (f"error: no grpo result under {tmp_path}/grpo/"
                                            "checkpoints; run `safegrpo train redteam` first")
    assert dt < 10


@pytest.mark.parametrize(("port", "bound"), [("70000", "65535"), ("-1", "0")])
def test_scorer_port_out_of_range_is_one_line(port, bound):
    out, _ = _invoke("serve", "scorer", "--port", port)
    assert out.exit_code == 2 and "--port" in _box_line(out) and bound in _box_line(out)


def test_scorer_busy_port_is_refused_before_the_judge_loads(monkeypatch):
    import safegrpo.cli_serve as serve

    def judge(*a, **k):
        raise AssertionError("the judge was loaded before the port was checked")

    monkeypatch.setattr(serve, "served_judge", judge)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out, _ = _invoke("serve", "scorer", "--port", str(port))
    assert out.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in _box_line(out)


def _disk_full_at(monkeypatch, target: str, name: str) -> None:
    """torch.save of ``name`` into checkpoint ``target`` hits a full disk the way torch reports
    it: its zip writer raises "unexpected pos" with the OSError as the exception's context."""
    real = torch.save

    def save(obj, f, *a, **kw):
        path = str(getattr(f, "name", f))
        if target in path and path.endswith(name):
            try:
                f.write(b"PK\x03\x04 partial")
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError:  # torch leaves the OSError as the context
                raise RuntimeError(  # noqa: B904
                    "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
        return real(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", save)


def test_disk_full_while_checkpointing_is_one_line_and_keeps_the_previous(
        tiny_lm_path, tmp_path, monkeypatch):
    _disk_full_at(monkeypatch, "step_000002", "optimizer.pt")
    _, tr = make(tiny_lm_path, tmp_path, steps=2, save_every=1, keep_checkpoints=2)
    with pytest.raises(CheckpointError) as e:
        tr.train()
    msg = str(e.value)
    assert "\n" not in msg and "No space left on device" in msg
    assert "step_000002" in msg and "step_000001 is intact" in msg
    ckpts = tmp_path / "checkpoints"
    assert not (ckpts / "step_000002.tmp").exists() and not (ckpts / "step_000002").exists()
    assert latest_checkpoint(ckpts).name == "step_000001"  # verified: manifest, state, rng
    monkeypatch.undo()
    pol, again = make(tiny_lm_path, tmp_path, steps=2, save_every=1, keep_checkpoints=2)
    assert again.resume() == 1
    again.train()  # redoes step 1: the run ends as one the disk never refused
    straight_pol, straight = make(tiny_lm_path, tmp_path / "straight", steps=2, save_every=1)
    straight.train()
    want, got = trainable(straight_pol), trainable(pol)
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert _untimed(tmp_path / "metrics.jsonl") == _untimed(tmp_path / "straight/metrics.jsonl")


def _untimed(path) -> list[dict]:
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "perf/"))} for r in rows]


def test_disk_full_mid_run_is_one_cli_line(monkeypatch, tmp_path):
    """A write refused anywhere in a run (a Rust writer's "(os error 28)", an OSError on the
    exception chain) ends the command in one line naming the cause."""
    import safegrpo.cli as cli

    def run(*a, **k):
        raise RuntimeError("Error while serializing: I/O error: No space left on device "
                           "(os error 28)")

    monkeypatch.setattr(cli, "_run", run)
    out, _ = _invoke("train", "redteam", "--set", f"out_dir={tmp_path}")
    assert out.exit_code == 1 and "Traceback" not in out.output
    assert out.output.strip() == "error: cannot write: No space left on device"
