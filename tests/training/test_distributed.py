"""Two CPU processes (torchrun + accelerate): each rank samples different prompts; after a GRPO
step the weights must be identical on both ranks (DDP averaged the gradients) and the logged
metrics are the mean over ranks."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_processes_synchronise_gradients(tiny_lm_path, tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    # torchrun sets RANK/WORLD_SIZE; Accelerator(cpu=True) then runs MULTI_CPU over gloo.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           str(worker), tiny_lm_path, str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    rec = json.loads((tmp_path / "ddp.json").read_text())
    assert rec["world"] == 2
    assert rec["rank_rewards"][0] != rec["rank_rewards"][1]  # ranks saw different data
    # logged: the mean over ranks
    assert abs(rec["logged_reward"] - sum(rec["rank_rewards"]) / 2) < 1e-6
    assert rec["moved"] > 0
    assert rec["max_rank_diff"] == 0.0  # yet ended with identical weights
