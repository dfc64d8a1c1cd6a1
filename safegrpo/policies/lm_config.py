"""Config of an LM policy: the model, LoRA, sampling settings and the rollout engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from safegrpo.policies.engines import ENGINES, EngineConfig, Sampling
from safegrpo.policies.prompting import PromptFormat


@dataclass(frozen=True)
class LoRAConfig:
    r: int = 16
    """LoRA rank; 0 trains every weight (reference = a frozen copy)."""
    alpha: int = 32
    """LoRA scaling numerator (scale = alpha / r)."""
    dropout: float = 0.0
    """LoRA dropout (keep 0 for exact log-prob replay in GRPO)."""
    target_modules: tuple[str, ...] = ("all-linear",)
    """Module names to adapt, or ('all-linear',)."""
    layers: tuple[int, ...] = ()
    """Only adapt these decoder layers (empty = all; negative counts from the top). Adapting only
    the top layers stops backpropagation there: the cheap way to fine-tune on a CPU."""

    def __post_init__(self) -> None:
        if self.r < 0 or not 0 <= self.dropout < 1:
            raise ValueError("lora.r must be >= 0 and lora.dropout in [0, 1)")


@dataclass(frozen=True)
class LMPolicyConfig:
    model: str = ""
    """HF hub id or local path of the base causal LM (loaded with from_pretrained)."""
    init_adapter: str | None = None
    """Optional peft adapter dir (e.g. from SFT) merged into the base before training."""
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    """LoRA settings of the trainable adapter."""
    dtype: str = "float32"
    """Weights dtype: float32 | bfloat16 | float16."""
    max_prompt_tokens: int = 128
    """Prompts are left-truncated to this many tokens."""
    max_new_tokens: int = 48
    """Completion budget."""
    temperature: float = 1.0
    """Sampling temperature (log-probs use the same temperature)."""
    top_p: float = 1.0
    """Nucleus sampling (1.0 = off; < 1 makes sampling and log-probs differ, see docs)."""
    top_k: int = 0
    """Top-k sampling (0 = off; like top_p, it makes sampling and log-probs differ)."""
    min_p: float = 0.0
    """Min-p sampling (0 = off)."""
    repetition_penalty: float = 1.0
    """Repetition penalty of the sampler (1.0 = off)."""
    generation_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for the engine's sampler (hf: generate(); vllm: SamplingParams)."""
    shared_prompt_logprobs: bool = True
    """Log-prob forwards run each distinct prompt once and reuse its KV cache for its G
    completions (the same log-probs and gradients; off under gradient checkpointing or dropout)."""
    engine: EngineConfig = field(default_factory=EngineConfig)
    """Rollout engine that samples completions (hf | vllm); the trainer computes log-probs."""
    seed: int = 0
    """Seed of the adapter initialisation (runs and resumes start from identical weights)."""
    prompt: PromptFormat = field(default_factory=PromptFormat)
    """Chat template use and system message (recorded with every saved policy)."""

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"policy.dtype must be float32|bfloat16|float16, got {self.dtype!r}")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError("policy.temperature must be > 0 and policy.top_p in (0, 1]")
        if self.top_k < 0 or not 0 <= self.min_p < 1 or self.repetition_penalty <= 0:
            raise ValueError("policy.top_k must be >= 0, policy.min_p in [0, 1) and "
                             "policy.repetition_penalty > 0")
        ENGINES.get(self.engine.name)  # unknown engine names fail at load, listing the valid ones

    def sampling(self, n: int, *, seed: int, greedy: bool = False,
                 logprobs: bool = False) -> Sampling:
        """This policy's sampling settings for one engine call."""
        return Sampling(n=n, max_new_tokens=self.max_new_tokens, greedy=greedy,
                        temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                        min_p=self.min_p, repetition_penalty=self.repetition_penalty,
                        stop=self.engine.stop, seed=seed, logprobs=logprobs,
                        extra=dict(self.generation_kwargs))
