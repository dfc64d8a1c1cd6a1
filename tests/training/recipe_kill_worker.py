"""A `safegrpo` command in its own process that can SIGKILL itself at the start of its N-th
trainer step (used by tests/reliability/test_recipe_resume.py).

    python tests/training/recipe_kill_worker.py [--kill-at N] -- train redteam -c PRESET ...

N counts the steps of every GRPO / diffusion trainer the command starts, from 0 (self-play
runs several), so the kill lands at the same place every time; SIGKILL skips every
finally/atexit, like ``kill -9``.
"""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def arm(kill_at: int) -> None:
    from safegrpo.training.diffusion_grpo import DiffusionGRPOTrainer
    from safegrpo.training.grpo import GRPOTrainer

    seen = {"n": 0}
    for cls in (GRPOTrainer, DiffusionGRPOTrainer):
        def step(self, s, _real=cls.step):
            if seen["n"] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            seen["n"] += 1
            return _real(self, s)

        cls.step = step


def main() -> None:
    split = sys.argv.index("--")
    opts, args = sys.argv[1:split], sys.argv[split + 1:]
    if "--kill-at" in opts:
        arm(int(opts[opts.index("--kill-at") + 1]))
    from safegrpo.cli import app

    app(args, standalone_mode=False)


if __name__ == "__main__":
    main()
