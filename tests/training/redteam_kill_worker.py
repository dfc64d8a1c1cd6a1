"""`safegrpo train redteam` on a tiny preset in its own process, optionally SIGKILLed at the start
of a GRPO step (used by tests/reliability/test_checkpoint_kill.py).

    python tests/training/redteam_kill_worker.py OUT STEPS [--resume] [--kill-at S]

The run skips the evaluation and report stages: what is compared is the training itself (the
final adapter and metrics.jsonl).
"""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["data.sft_examples=48", "data.sft.epochs=1", "model.tiny.hidden=32",
        "model.tiny.layers=1", "model.tiny.heads=2", "model.tiny.vocab_size=400",
        "sampling.max_new_tokens=8", "target.max_new_tokens=8", "training.prompts_per_step=2",
        "training.group_size=4", "training.minibatch_size=8", "training.save_every=2",
        "training.keep_checkpoints=1", "training.report_to=[]", "training.early_stop_reward=null"]


def main() -> None:
    out, steps = sys.argv[1], int(sys.argv[2])
    kill = int(sys.argv[sys.argv.index("--kill-at") + 1]) if "--kill-at" in sys.argv else None
    from safegrpo.cli import app
    from safegrpo.training.grpo import GRPOTrainer

    if kill is not None:
        real_step = GRPOTrainer.step

        def step(self, s):
            if s == kill:
                os.kill(os.getpid(), signal.SIGKILL)
            return real_step(self, s)

        GRPOTrainer.step = step
    sets = [x for kv in [*TINY, f"training.steps={steps}", f"out_dir={out}"] for x in ("--set", kv)]
    args = ["train", "redteam", "-c", os.path.join(ROOT, "configs", "redteam_demo.yaml"), *sets,
            "--skip", "evaluate", "--skip", "report"]
    app(args + (["--resume"] if "--resume" in sys.argv else []), standalone_mode=False)


if __name__ == "__main__":
    main()
