"""The TRL sides of ``vs_trl.py``: ``trl.GRPOTrainer`` set to the same run as safegrpo's side
(fp32 or ``bf16=True``, optionally TRL's own vLLM colocate path), timed per step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from benchmarks.step_timers import StepClock, Timers, summarise
from safegrpo.policies.lm import LoRAConfig


@dataclass(frozen=True)
class Bench:
    """What every side shares: the prompts, the reward and the learning rate."""

    prompt_text: Callable[[int, int], str]
    """Prompt i of a step."""
    reward: Callable[..., list[float]]
    """TRL-style reward function."""
    lr: float
    """Learning rate."""


def trl_trainer(path: Path, args, tmp: Path, clock: StepClock, bench: Bench, vllm: bool = False,
                bf16: bool = False):
    import trl
    from datasets import Dataset
    from peft import LoraConfig

    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    data = Dataset.from_dict({"prompt": [bench.prompt_text(s, i) for s in range(args.steps + 1)
                                         for i in range(args.prompts)]})
    lc = LoRAConfig(r=args.lora_r)
    peft = LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, task_type="CAUSAL_LM",
                      target_modules="all-linear") if args.lora_r else None
    # transformers < 5.20 (the vLLM venv) still calls it gradient_checkpointing
    import inspect

    ckpt = ("activation_checkpointing" if "activation_checkpointing"
            in inspect.signature(trl.GRPOConfig).parameters else "gradient_checkpointing")
    cfg = trl.GRPOConfig(
        output_dir=str(tmp / "trl"), use_cpu=True, bf16=bf16, fp16=False, seed=0,
        **{ckpt: False}, per_device_train_batch_size=args.prompts * args.group_size,
        gradient_accumulation_steps=1, num_generations=args.group_size, num_iterations=1,
        max_completion_length=args.max_new_tokens, beta=0.0, loss_type=args.loss,
        scale_rewards="group", epsilon=0.2, learning_rate=bench.lr, lr_scheduler_type="constant",
        weight_decay=0.0, max_grad_norm=1.0, temperature=1.0, top_p=1.0, top_k=0,
        generation_kwargs=({"min_tokens": args.max_new_tokens, "ignore_eos": True} if vllm
                           else {"min_new_tokens": args.max_new_tokens}),
        **(trl_vllm_args(args) if vllm else {}), max_steps=args.steps + 1,
        shuffle_dataset=False, report_to="none", logging_steps=10**9, save_strategy="no",
        disable_tqdm=True)
    return trl.GRPOTrainer(model=model, reward_funcs=[bench.reward], args=cfg, train_dataset=data,
                           processing_class=tok, peft_config=peft, callbacks=[clock])


def trl_vllm_args(args) -> dict[str, Any]:
    """TRL's own vLLM path, colocate (vLLM in the trainer process, as safegrpo_vllm)."""
    import os

    for k, v in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"),
                 ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29533")):
        os.environ.setdefault(k, v)  # TRL's colocate mode runs vLLM's external_launcher
    return dict(use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=0.3,
                vllm_max_model_length=256)


def run_trl(path: Path, args, tmp: Path, bench: Bench, vllm: bool = False, bf16: bool = False,
            ) -> dict[str, Any]:
    from accelerate.state import AcceleratorState, GradientState

    timers = Timers()
    clock = StepClock(timers)
    trainer = trl_trainer(path, args, tmp, clock, bench, vllm, bf16)
    lengths: list[list[int]] = []
    generate = trainer._generate_single_turn

    def counted(*a, **k):
        ids, logprobs = generate(*a, **k)
        lengths.append([len(c) for c in ids])
        return ids, logprobs

    trainer._generate_single_turn = counted
    timers.wrap(trainer, "_generate_single_turn", "generate")
    timers.wrap(trainer, "_get_per_token_logps_and_entropies", "logprob_fwd")
    timers.wrap(trainer, "_calculate_rewards", "reward")
    timers.wrap(trainer, "_prepare_inputs", "other")
    timers.wrap(trainer, "training_step", "backward_step")
    timers.wrap(trainer, "_clip_grad_norm", "backward_step")
    try:
        trainer.train()
    finally:  # TRL leaves accelerate's process-wide state behind
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
    flat = [n for step in lengths[1:] for n in step]
    return {**summarise(clock.times[1:], flat, timers), "global_steps": trainer.state.global_step}
