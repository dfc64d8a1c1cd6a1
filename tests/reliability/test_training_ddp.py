"""Two CPU processes (torchrun + gloo) whose data differ in ways that used to desynchronise them:
one rank with nothing to learn (all rewards equal) and a stop rule that fires on one rank only.
Every rank must run the same number of backward passes and optimizer steps, stop together, and
end where the arithmetic says it should."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import torch

WORKER = Path(__file__).resolve().parents[1] / "training" / "ddp_worker.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def run(cmd: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own session; on timeout kill the whole group (torchrun's workers too)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(
            f"timed out after {timeout}s (a rank waiting at a collective)") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_constant_rewards_on_one_rank_and_a_one_rank_stop_rule(tiny_lm_path, tmp_path):
    opts = {"steps": 3, "constant_rank": 1, "stop_rank": 1, "stop_at": 1}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(WORKER),
           tiny_lm_path, str(tmp_path / "ddp"), json.dumps(opts)]
    res = run(cmd)  # used to hang here
    assert res.returncode == 0, res.stderr[-3000:]
    rec = json.loads((tmp_path / "ddp" / "ddp.json").read_text())
    # both stopped together
    assert rec["rank_steps"] == [2, 2] and rec["stop_reason"] == "local rule"
    assert rec["max_rank_diff"] == 0.0 and rec["moved"] > 0
    # reference: rank 0's data alone, loss halved = DDP's mean with a rank whose rows carry
    # advantage 0 (zero gradient)
    ref = run([sys.executable, str(WORKER), tiny_lm_path, str(tmp_path / "one"),
               json.dumps({"steps": 2, "half_loss": True})])
    assert ref.returncode == 0, ref.stderr[-3000:]
    a = torch.load(tmp_path / "ddp" / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "one" / "weights.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a), max(float((a[k] - b[k]).abs().max()) for k in a)
