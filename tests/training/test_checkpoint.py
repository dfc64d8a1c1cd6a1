import json

import torch

from safegrpo.training.checkpoint import latest_checkpoint, load_state, save_checkpoint


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
