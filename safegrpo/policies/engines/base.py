"""The rollout-engine interface: who turns prompt token ids into sampled completion token ids.

An engine only *samples*. The trainer recomputes every log-prob the loss reads with its own
model (as TRL does with vLLM), so the engine's precision never reaches the gradient; the
per-token log-probs an engine reports (``Generation.logprobs``) serve only to measure the
engine-trainer mismatch and, optionally, to correct for it (truncated importance sampling).

Engines are registered by name (``@ENGINES.register``) and chosen with ``policy.engine.name``;
``LMPolicy`` never branches on the name. Weight sync is by version: the policy counts weight
changes (``LMPolicy.version``) and an engine refreshes its copy when the version it last saw
differs (a merged bf16 copy, a LoRA adapter written as files, or a weight reload).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from safegrpo.core.registry import Registry

ENGINES: Registry[Any] = Registry("rollout engine")


@dataclass(frozen=True)
class EngineConfig:
    name: str = "hf"
    """Rollout engine: hf (transformers generate, the reference path) | vllm | auto (vllm when
    it is importable, else hf; the choice is printed and recorded)."""
    gen_dtype: str = "policy"
    """Dtype the engine samples in: policy (the policy's own weights, no copy) | float32 |
    bfloat16 | float16 | auto (bfloat16 where the hardware has fast bf16 matmuls: CUDA, or a CPU
    with AVX-512 BF16 / AMX; else policy). A dtype other than the policy's keeps a merged copy
    for sampling."""
    merge_lora: bool = False
    """hf: sample from a plain copy with the LoRA adapter folded in (refreshed after each
    update), which skips the adapter's extra matmuls; implied by a gen_dtype other than policy."""
    share_prefill: bool = False
    """hf: run each prompt's prefill once and copy its KV cache to the n samples of its group
    (instead of n identical prefills); vllm's prefix cache does this by itself."""
    stop: tuple[str, ...] = ()
    """Stop strings: a completion ends after the first one it contains (kept in the completion),
    e.g. ['}'] ends the moderation action once its JSON closes."""
    mode: str = "colocate"
    """vllm: colocate (vllm.LLM in this process) | server (an OpenAI-compatible vLLM server)."""
    lora_sync: str = "reload"
    """vllm colocate with a LoRA policy: reload (the effective weights, adapter folded in,
    loaded into vLLM's model in place; no files) | request (the adapter written as files after
    each update and sampled through a new LoRARequest id, as TRL's async trainer; the base
    reloaded only when it moves)."""
    url: str = ""
    """vllm server mode: base URL of a running server (`safegrpo serve vllm MODEL`), e.g.
    http://127.0.0.1:8000; empty = start and manage one (restarted when the base changes)."""
    python: str = ""
    """vllm server mode, managed: the Python that runs the server, e.g. .venv-vllm/bin/python
    (vLLM in its own venv; the trainer's env needs no vLLM); empty = this interpreter."""
    max_model_len: int = 0
    """vllm: context length to reserve (0 = max_prompt_tokens + max_new_tokens)."""
    kv_cache_gib: float = 1.0
    """vllm on CPU: KV-cache space in GiB (VLLM_CPU_KVCACHE_SPACE)."""
    gpu_memory_utilization: float = 0.3
    """vllm on GPU: share of device memory for weights and KV cache."""
    work_dir: str = ""
    """Where engine files go (synced adapters, the merged base); empty = a temporary folder."""
    timeout_s: float = 300.0
    """vllm server mode: seconds to wait for a request or for the server to come up."""

    def __post_init__(self) -> None:
        if self.gen_dtype not in ("policy", "float32", "bfloat16", "float16", "auto"):
            raise ValueError("policy.engine.gen_dtype must be policy|float32|bfloat16|float16|"
                             f"auto, got {self.gen_dtype!r}")
        if self.lora_sync not in ("reload", "request"):
            raise ValueError(f"policy.engine.lora_sync must be reload|request, "
                             f"got {self.lora_sync!r}")
        if self.mode not in ("colocate", "server"):
            raise ValueError(f"policy.engine.mode must be colocate|server, got {self.mode!r}")
        self._check_available()
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"policy.engine.url must start with http:// or https://, "
                             f"got {self.url!r}")
        if any(not s for s in self.stop):
            raise ValueError("policy.engine.stop strings must be non-empty")
        if self.kv_cache_gib <= 0 or not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError("policy.engine.kv_cache_gib must be > 0 and "
                             "gpu_memory_utilization in (0, 1]")


    def _check_available(self) -> None:
        """At config load, not after SFT: vLLM must import here for colocate, and a managed
        server's interpreter must exist."""
        import importlib.util
        from pathlib import Path

        hint = ("bash scripts/install_vllm.sh makes .venv-vllm (CPU); pip install vllm on GPUs; "
                "or policy.engine.name: auto")
        if self.name != "vllm":
            return
        if self.mode == "colocate" and importlib.util.find_spec("vllm") is None:
            raise ValueError(f"policy.engine.name is vllm (colocate) but vLLM is not installed in "
                             f"this environment; {hint}")
        managed = self.mode == "server" and not self.url
        if managed and self.python and not Path(self.python).exists():
            raise ValueError(f"policy.engine.python: no interpreter at {self.python!r}; {hint}")
        if managed and not self.python and importlib.util.find_spec("vllm") is None:
            raise ValueError("policy.engine.mode is server with no url: safegrpo starts the "
                             "server with policy.engine.python (a venv with vLLM, e.g. "
                             f".venv-vllm/bin/python), and this environment has no vLLM; {hint}")


@dataclass(frozen=True)
class Sampling:
    """How to sample one call: n completions per prompt, rows of one prompt adjacent."""

    n: int
    max_new_tokens: int
    greedy: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    """0 = off."""
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0
    logprobs: bool = False
    """Also return the engine's log-prob of each sampled token (mismatch / IS correction)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Engine-specific keyword arguments passed through (policy.generation_kwargs)."""


@dataclass(frozen=True)
class Generation:
    """What an engine returns for P prompts: B = P * n completions."""

    tokens: list[list[int]]
    """B token-id lists, each ending at (and including) EOS or the stop string, or at the budget."""
    logprobs: list[list[float]] | None = None
    """B lists of the engine's log-prob of each sampled token (None when not reported)."""
    version: int = -1
    """The policy version (``LMPolicy.version``) the engine sampled from."""


def fast_bf16() -> bool:
    """Whether bf16 matmuls are fast here: a CUDA device with bf16, or a CPU that reports
    avx512_bf16 or amx_bf16 (elsewhere bf16 runs emulated, slower than fp32)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve(cfg: EngineConfig, vllm_importable: bool | None = None) -> EngineConfig:
    """``cfg`` with ``auto`` settled: the engine by whether vLLM imports, the dtype by the
    hardware (``fast_bf16``)."""
    from dataclasses import replace

    if cfg.name == "auto":
        if vllm_importable is None:
            import importlib.util

            vllm_importable = importlib.util.find_spec("vllm") is not None
        cfg = replace(cfg, name="vllm" if vllm_importable else "hf")
    if cfg.gen_dtype == "auto":
        cfg = replace(cfg, gen_dtype="bfloat16" if fast_bf16() else "policy")
    return cfg


def describe(cfg: EngineConfig) -> str:
    """One line naming the engine a run samples with."""
    where = f", {cfg.mode}" if cfg.name == "vllm" else ""
    return f"rollout engine: {cfg.name}{where}, sampling dtype {cfg.gen_dtype}"


class RolloutEngine(Protocol):
    """``generate`` samples from the policy as it is now (syncing first when the policy's version
    moved); ``close`` frees the engine (workers, servers, temporary files)."""

    def generate(self, policy: Any, prompt_ids: list[list[int]], sampling: Sampling,
                 model: Any = None) -> Generation: ...

    def close(self) -> None: ...


def truncate_at_stop(tokens: list[int], text_of, stops: tuple[str, ...], eos: int | None,
                     ) -> list[int]:
    """``tokens`` cut after EOS or after the first token whose prefix text holds a stop string.
    ``text_of(ids) -> str`` decodes; a stop string spread over several tokens ends at the token
    that completes it (vLLM's ``include_stop_str_in_output`` semantics)."""
    if eos is not None and eos in tokens:
        tokens = tokens[:tokens.index(eos) + 1]
    if not stops:
        return tokens
    if not any(s in text_of(tokens) for s in stops):
        return tokens
    lo, hi = 1, len(tokens)  # smallest prefix whose text reaches the stop's end
    while lo < hi:
        mid = (lo + hi) // 2
        if any(s in text_of(tokens[:mid]) for s in stops):
            hi = mid
        else:
            lo = mid + 1
    return tokens[:lo]


def pad_right(rows: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Completion token-id lists -> ids [B, T] padded with ``pad`` and mask [B, T]."""
    width = max(1, max((len(r) for r in rows), default=0))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return ids.to(device), mask.to(device)
