"""kill -9 (SIGKILL) a GRPO run mid-step and mid-checkpoint-write, then ``resume``: the result
must be bit-identical to an uninterrupted run (torch.equal on every weight) and metrics.jsonl must
hold each step once with the same values (wall-clock fields aside).

Each run is its own process (tests/training/kill_worker.py) that SIGKILLs itself at a chosen
point, so the kill lands at the same place every time.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).resolve().parents[1] / "training" / "kill_worker.py"
SPEC = {"steps": 4, "save_every": 2, "keep_checkpoints": 1}
TIMING = ("time/", "perf/")


def run(model: str, out: Path, *extra: str) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    res = subprocess.run([sys.executable, str(WORKER), model, str(out), json.dumps(SPEC), *extra],
                         capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode in (0, -signal.SIGKILL), res.stderr[-3000:]
    return res.returncode


def records(out: Path) -> list[dict]:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in rows]


@pytest.fixture(scope="module")
def straight(tiny_lm_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight")
    assert run(tiny_lm_path, out) == 0
    return out


@pytest.mark.parametrize("kills", [
    # mid-step: before the first checkpoint (step 0 already logged), then after checkpoint 2
    # (step 2 logged, then rolled back)
    ("update:1", "update:3"),
    # mid-checkpoint-write: optimizer.pt of the first checkpoint half written; the last
    # checkpoint folder incomplete (no rng.pt / state / manifest); step_4 renamed but ``latest``
    # still naming step_2; step_4 complete and step_2 half deleted
    ("save:2:optimizer", "save:4:rng", "save:4:latest", "save:4:prune"),
], ids=["mid-step", "mid-checkpoint-write"])
def test_kill_then_resume_is_bit_identical(tiny_lm_path, straight, tmp_path, kills):
    out = tmp_path / "run"
    for i, kill in enumerate(kills):  # each kill hits the run resumed after the previous one
        args = ("--resume",) if i else ()
        assert run(tiny_lm_path, out, *args, "--kill", kill) == -signal.SIGKILL, kill
    assert run(tiny_lm_path, out, "--resume") == 0
    want = torch.load(straight / "final_weights.pt", weights_only=True)
    got = torch.load(out / "final_weights.pt", weights_only=True)
    assert want.keys() == got.keys()
    differ = [k for k in want if not torch.equal(want[k], got[k])]
    assert not differ, f"weights differ after kills {kills}: {differ[:3]}"
    assert [r["step"] for r in records(out)] == [0, 1, 2, 3]
    assert records(out) == records(straight)
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["latest", "step_000004"]  # no leftovers (tmp, trash, stale) after the rerun
