import json

import pytest
import torch

from safegrpo.training.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_state,
    save_checkpoint,
    set_rng_state,
    verify,
)


def _payload(d):
    torch.save({"w": torch.ones(2)}, d / "weights.pt")


def test_atomic_save_keep_and_latest(tmp_path):
    for s in (1, 2, 3):
        save_checkpoint(tmp_path, s, _payload, {"x": s}, keep=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["latest", "step_000002", "step_000003"]
    ck = latest_checkpoint(tmp_path)
    assert ck.name == "step_000003" and load_state(ck) == {"step": 3, "x": 3}
    assert (ck / "rng.pt").exists()


def test_killed_mid_save_keeps_previous(tmp_path):
    save_checkpoint(tmp_path, 1, _payload, {}, keep=3)

    def crash(d):
        _payload(d)
        raise KeyboardInterrupt  # the process dies while writing step 2

    try:
        save_checkpoint(tmp_path, 2, crash, {}, keep=3)
    except KeyboardInterrupt:
        pass
    assert (tmp_path / "step_000002.tmp").exists()
    assert latest_checkpoint(tmp_path).name == "step_000001"
    # a stale pointer to a half-written dir is ignored too
    (tmp_path / "latest").write_text("step_000002")
    assert latest_checkpoint(tmp_path).name == "step_000001"
    save_checkpoint(tmp_path, 2, _payload, {"ok": True}, keep=3)  # the retry cleans the leftover
    assert json.loads((tmp_path / "step_000002" / "trainer_state.json").read_text())["ok"]
    assert not (tmp_path / "step_000002.tmp").exists()


def test_rng_state_loads_with_weights_only_and_round_trips(tmp_path):
    import random

    import numpy as np

    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    ck = save_checkpoint(tmp_path, 1, _payload, {})
    want = (random.random(), float(np.random.normal()), float(torch.rand(())))
    state = torch.load(ck / "rng.pt", weights_only=True)  # no pickled numpy objects (issue 14)
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_rng_state(state)
    assert (random.random(), float(np.random.normal()), float(torch.rand(()))) == want


def test_manifest_detects_a_modified_file_and_stale_newer_folders(tmp_path):
    for s in (1, 2):
        save_checkpoint(tmp_path, s, _payload, {"x": s}, keep=3)
    # same size, new bytes
    torch.save({"w": torch.zeros(2)}, tmp_path / "step_000002" / "weights.pt")
    with pytest.raises(CheckpointError, match="weights.pt: checksum mismatch"):
        verify(tmp_path / "step_000002")
    assert latest_checkpoint(tmp_path).name == "step_000001"
    # resuming from step 1 and saving it again drops step 2 (a rolled-back future)
    save_checkpoint(tmp_path, 1, _payload, {"x": 1}, keep=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_000001"]
