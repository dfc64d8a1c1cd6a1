"""A corrupted newest checkpoint is reported in one log line and the previous complete one is
used; the resumed run then ends bit-identical to an uninterrupted one. With no usable
checkpoint, resume raises one clear line (CheckpointError) instead of a traceback."""

import json
import logging
import shutil

import pytest
import torch

from safegrpo.training.checkpoint import CheckpointError, write_manifest
from tests.training.test_grpo import make, trainable

STEPS = {"steps": 2, "save_every": 1, "keep_checkpoints": 2}


@pytest.fixture(scope="module")
def finished(tiny_lm_path, tmp_path_factory):
    """An uninterrupted 2-step run with checkpoints step_1 and step_2, and its final weights."""
    out = tmp_path_factory.mktemp("done")
    pol, tr = make(tiny_lm_path, out, **STEPS)
    tr.train()
    return out, trainable(pol)


def forge_state(**changes):
    """Rewrite trainer_state.json and re-sign the manifest: the hashes match, the state is bad."""
    def forge(p):
        state = json.loads(p.read_text())
        state.update(changes)
        p.write_text(json.dumps(state))
        write_manifest(p.parent)
    return forge


def truncate(p):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def garbage(p):
    p.write_bytes(torch.randint(0, 256, (p.stat().st_size,),
                                generator=torch.Generator().manual_seed(0),
                                dtype=torch.uint8).numpy().tobytes())


CORRUPTIONS = {
    "truncated weights": ("policy/adapter_model.safetensors", truncate),
    "garbage optimizer": ("optimizer.pt", garbage),
    "bad trainer_state.json": ("trainer_state.json", lambda p: p.write_text('{"step": 2, "hist')),
    "empty rng.pt": ("rng.pt", lambda p: p.write_bytes(b"")),
    "step -5, manifest matching": ("trainer_state.json", forge_state(step=-5)),
    "step of another folder": ("trainer_state.json", forge_state(step=7)),
    "step as text": ("trainer_state.json", forge_state(step="2")),
    "history missing a step": ("trainer_state.json", forge_state(history=[{"step": 0}])),
    "task state not one per rank": ("trainer_state.json", forge_state(task_state={"seen": 8})),
}


@pytest.mark.parametrize("what", list(CORRUPTIONS))
def test_corrupt_newest_falls_back_to_previous(tiny_lm_path, finished, tmp_path, caplog, what):
    done, final = finished
    out = tmp_path / "run"
    shutil.copytree(done, out)
    rel, corrupt = CORRUPTIONS[what]
    corrupt(out / "checkpoints" / "step_000002" / rel)
    pol, tr = make(tiny_lm_path, out, **STEPS)
    with caplog.at_level(logging.WARNING, logger="safegrpo.training.checkpoint"):
        assert tr.resume() == 1
    lines = [r.getMessage() for r in caplog.records]
    assert any("step_000002 unusable" in m and rel.rsplit("/", 1)[-1] in m
               and "falling back to step_000001" in m for m in lines), lines
    assert all("\n" not in m for m in lines)
    tr.train()  # redo step 1 -> 2 from the previous checkpoint
    got = trainable(pol)
    assert all(torch.equal(final[k], got[k]) for k in final)


def test_no_usable_checkpoint_is_one_clear_error(tiny_lm_path, finished, tmp_path):
    done, _ = finished
    out = tmp_path / "run"
    shutil.copytree(done, out)
    for step in ("step_000001", "step_000002"):
        (out / "checkpoints" / step / "rng.pt").write_bytes(b"")
    _, tr = make(tiny_lm_path, out, **STEPS)
    with pytest.raises(CheckpointError,
                       match=r"no usable checkpoint under .*rng\.pt: 0 bytes, expected") as e:
        tr.resume()
    assert "\n" not in str(e.value)
