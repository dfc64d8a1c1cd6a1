#!/usr/bin/env python
"""kill -9 at random moments, resume, repeat: the end state must equal an uninterrupted run.

The CI tests (tests/reliability/test_checkpoint_kill.py) kill at fixed points; this script kills
a tiny GRPO run (tests/training/kill_worker.py) after a random delay, resumes it with
``--resume``, kills again, ... until a run finishes, for ``--trials`` independent runs. Each
trial must end bit-identical (torch.equal on every weight) to one uninterrupted run, with
metrics.jsonl holding every step once and the same values (wall-clock fields aside).
Prints one line per trial and a summary (trials, kills, mismatches).

    python benchmarks/kill_resume.py --trials 20 --steps 8 --save-every 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORKER = ROOT / "tests" / "training" / "kill_worker.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
       "PYTHONPATH": str(ROOT)}


def metrics(out: Path) -> list[dict]:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "perf/"))} for r in rows]


def launch(model: str, out: Path, spec: dict, resume: bool) -> subprocess.Popen:
    cmd = ([sys.executable, str(WORKER), model, str(out), json.dumps(spec)]
           + (["--resume"] if resume else []))
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)


def trial(model: str, out: Path, spec: dict, max_delay: float, rng: random.Random) -> int:
    """Run to completion under random kills; returns the number of kills."""
    kills, resume = 0, False
    while True:
        proc = launch(model, out, spec, resume)
        try:  # after 30 kills let it finish, so a trial always ends
            proc.wait(timeout=rng.uniform(0.5, max_delay) if kills < 30 else None)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills, resume = kills + 1, True
            continue
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.read().decode()[-2000:])
        return kills


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--save-every", type=int, default=2)
    ap.add_argument("--max-delay", type=float, default=0.0, help="0 = the uninterrupted run time")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from safegrpo.policies.tiny import build_tiny_lm
    from tests.conftest import TINY_CORPUS

    spec = {"steps": args.steps, "save_every": args.save_every, "keep_checkpoints": 2}
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        model = str(build_tiny_lm(Path(tmp) / "lm", TINY_CORPUS, vocab_size=300, hidden=32,
                                  layers=1, heads=2))
        t0 = time.perf_counter()
        ref = Path(tmp) / "ref"
        if trial(model, ref, spec, float("inf"), rng) != 0:
            raise RuntimeError("reference run was killed")
        max_delay = args.max_delay or (time.perf_counter() - t0)
        want = torch.load(ref / "final_weights.pt", weights_only=True)
        bad = total_kills = 0
        for i in range(args.trials):
            out = Path(tmp) / f"t{i}"
            kills = trial(model, out, spec, max_delay, rng)
            got = torch.load(out / "final_weights.pt", weights_only=True)
            same = all(torch.equal(want[k], got[k]) for k in want) and metrics(out) == metrics(ref)
            bad += not same
            total_kills += kills
            print(f"trial {i}: {kills} kills, {'identical' if same else 'MISMATCH'}")
        print(f"trials={args.trials} kills={total_kills} mismatches={bad} "
              f"(max delay {max_delay:.1f}s)")
        sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
