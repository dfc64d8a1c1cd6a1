"""LM policy over HF transformers + peft LoRA.

Reference model: the policy with its LoRA adapter disabled. When GRPO starts from an SFT
adapter, that adapter is merged into the base weights first (``init_adapter``), so "adapter
disabled" is the SFT policy and never the bare base model. With ``lora.r = 0`` all weights
train and the reference is a frozen copy.
"""

from __future__ import annotations

import contextlib
import copy
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from safegrpo.core.types import LMRollout
from safegrpo.policies.engines import ENGINES
from safegrpo.policies.engines.base import describe, pad_right, resolve
from safegrpo.policies.lineage import write_lineage
from safegrpo.policies.lm_config import LMPolicyConfig, LoRAConfig
from safegrpo.policies.lm_ops import load_base, token_logprobs, wrap_lora
from safegrpo.policies.lm_ops import merge_adapter as merge_adapter  # recipes import it from here
from safegrpo.policies.shared_prompt import can_share, shared_prompt_logprobs


class LMPolicy:
    """Trainable LM policy: sampling, log-probs, reference log-probs, save/load."""

    def __init__(self, cfg: LMPolicyConfig, device: str | torch.device = "cpu", *, loaded=None):
        """``loaded = (tokenizer, model)`` reuses weights already in memory (one base model
        serves zero-shot eval, SFT, GRPO and the reference; see ``attach_lora``/``merge_lora``)."""
        if not cfg.model:
            raise ValueError("policy.model is required (hub id or path)")
        self.cfg = cfg
        if loaded is None:
            self.tokenizer, base = load_base(cfg.model, cfg.init_adapter, cfg.dtype)
        else:
            self.tokenizer, base = loaded
        self.chat = cfg.prompt.uses_chat(self.tokenizer)
        self.merged: list[str] = [cfg.init_adapter] if cfg.init_adapter else []
        self.version = 0  # counts weight changes; engines resync when it moves
        self.base_version = 0  # counts changes of the weights under the adapter
        self._engine = None
        self.model = base.to(torch.device(device))
        if cfg.lora.r > 0:
            self.attach_lora(cfg.lora)
        # full fine-tuning: frozen copy made lazily, only when a KL term asks for it
        self._ref = None
        self.generated_tokens = 0  # completion tokens sampled so far (throughput reports)

    @property
    def model(self):
        return self._model

    @model.setter
    def model(self, module) -> None:
        self._model = module
        self.weights_changed(base=True)

    def weights_changed(self, base: bool = False) -> None:
        """Call after changing weights in place (an optimizer step, a state-dict load): rollout
        engines sample from the new weights from the next call on. ``base``: weights under the
        adapter moved too (full fine-tuning, a merge)."""
        self.version += 1
        if base:
            self.base_version += 1

    @property
    def engine(self):
        """The rollout engine (built on first use from ``cfg.engine``)."""
        if self._engine is None:
            eng = resolve(self.cfg.engine)
            if eng != self.cfg.engine:  # an 'auto' was settled: say how
                print(f"[safegrpo] {describe(eng)} (from auto)", file=sys.stderr)
            self.cfg = replace(self.cfg, engine=eng)
            self._engine = ENGINES.get(eng.name)(eng, self.cfg)
        return self._engine

    def close(self) -> None:
        """Stop the rollout engine (vLLM workers, temporary files); safe to call twice."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def attach_lora(self, lora: LoRAConfig) -> None:
        """Wrap the current weights in a fresh LoRA adapter (seeded by ``cfg.seed``)."""
        torch.manual_seed(self.cfg.seed)
        self.model = wrap_lora(self.model, lora)
        self.cfg = replace(self.cfg, lora=lora)

    def merge_lora(self, saved_at: str | Path | None = None) -> None:
        """Fold the adapter into the weights in place (e.g. SFT -> the GRPO reference); the
        adapter's folder is recorded so a later adapter reloads as base + this + that."""
        if not self.uses_lora:
            raise ValueError("merge_lora: the policy has no LoRA adapter")
        self.model = self.model.merge_and_unload()
        self.cfg = replace(self.cfg, lora=replace(self.cfg.lora, r=0))
        if saved_at is not None:
            self.merged.append(str(saved_at))
        self._ref = None

    @property
    def device(self) -> torch.device:
        """Where the weights are (accelerate may have moved them)."""
        return next(self.model.parameters()).device

    @property
    def uses_lora(self) -> bool:
        return self.cfg.lora.r > 0

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    @contextlib.contextmanager
    def reference(self, model=None):
        """Context yielding the reference model (adapter disabled, or the frozen copy)."""
        model = model or self.model
        if self.uses_lora:
            with model.disable_adapter():
                yield model
        else:
            self.prepare_reference(model)
            yield self._ref

    def render(self, prompt: str) -> str:
        """A filled user message -> the text the model sees (chat template when in use)."""
        return self.cfg.prompt.render(self.tokenizer, prompt)

    def prompt_token_ids(self, prompt: str) -> list[int]:
        """Token ids of one rendered prompt, left-truncated to ``max_prompt_tokens``."""
        ids = self.tokenizer(self.render(prompt), add_special_tokens=not self.chat)["input_ids"]
        return ids[-self.cfg.max_prompt_tokens:]

    def prepare_reference(self, model=None) -> None:
        """Full fine-tuning: freeze a copy of ``model`` (default the policy) as the reference now.
        Trainers call this at construction, before resume loads a checkpoint, so the reference
        is the starting policy; later calls keep the first copy. No-op with LoRA."""
        if not self.uses_lora and self._ref is None:
            self._ref = copy.deepcopy(model or self.model).eval().requires_grad_(False)

    def encode_prompts(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        self.tokenizer.truncation_side = "left"
        enc = self.tokenizer([self.render(p) for p in prompts], return_tensors="pt", padding=True,
                             truncation=True, max_length=self.cfg.max_prompt_tokens,
                             add_special_tokens=not self.chat)
        return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

    @torch.no_grad()
    def generate(self, prompts: list[str], num_samples: int, *, seed: int, greedy: bool = False,
                 model=None, logprobs: bool = False) -> tuple[Tensor, ...]:
        """-> prompt_ids [B, P], prompt_mask [B, P], completion_ids [B, T], completion_mask [B, T]
        (+ the engine's log-probs [B, T] with ``logprobs``); B = len(prompts) * num_samples,
        rows of one prompt adjacent. The rollout engine samples; the mask covers the tokens up
        to and including EOS or a stop string."""
        ids, mask = self.encode_prompts(prompts)
        rows = [r[m.bool()].tolist() for r, m in zip(ids.cpu(), mask.cpu(), strict=True)]
        sampling = self.cfg.sampling(num_samples, seed=seed, greedy=greedy, logprobs=logprobs)
        gen = self.engine.generate(self, rows, sampling, model=model)
        comp, cmask = pad_right(gen.tokens, self.tokenizer.pad_token_id, self.device)
        self.generated_tokens += int(cmask.sum())
        out = (ids.repeat_interleave(num_samples, 0), mask.repeat_interleave(num_samples, 0),
               comp, cmask)
        if logprobs:
            lp = torch.zeros(cmask.shape, dtype=torch.float32)
            for i, row in enumerate(gen.logprobs or []):
                lp[i, :len(row)] = torch.tensor(row, dtype=torch.float32)
            out += (lp.to(self.device),)
        return out

    def logprobs(self, prompt_ids: Tensor, prompt_mask: Tensor, completion_ids: Tensor,
                 completion_mask: Tensor, *, model=None, with_entropy: bool = False):
        model = model or self.model
        if self.cfg.shared_prompt_logprobs and can_share(model, prompt_ids):
            return shared_prompt_logprobs(model, prompt_ids, prompt_mask, completion_ids,
                                          completion_mask, self.cfg.temperature, with_entropy)
        ids = torch.cat([prompt_ids, completion_ids], dim=1)
        mask = torch.cat([prompt_mask, completion_mask], dim=1)
        return token_logprobs(model, ids, mask, completion_ids.shape[1], self.cfg.temperature,
                              with_entropy)

    @torch.no_grad()
    def rollout(self, prompts: list[str], group_size: int, *, seed: int, need_ref: bool,
                group_offset: int = 0, model=None, need_old: bool = True,
                engine_logprobs: bool = False) -> LMRollout:
        """Sample ``group_size`` completions per prompt and record behaviour/reference log-probs
        (behaviour log-probs only with ``need_old``; an on-policy update does not read them;
        the engine's own log-probs with ``engine_logprobs``)."""
        model = model or self.model
        pids, pmask, cids, cmask, *elp = self.generate(prompts, group_size, seed=seed,
                                                        model=model, logprobs=engine_logprobs)
        old = self.logprobs(pids, pmask, cids, cmask, model=model)[0] if need_old else None
        ref = None
        if need_ref:
            with self.reference(model) as ref_model:
                ref, _ = self.logprobs(pids, pmask, cids, cmask, model=ref_model)
        texts = self.tokenizer.batch_decode(
            cids * cmask + (1 - cmask) * self.tokenizer.pad_token_id, skip_special_tokens=True)
        gids = (torch.arange(len(prompts), device=cids.device).repeat_interleave(group_size)
                + group_offset)
        return LMRollout(pids, pmask, cids, cmask, None if old is None else old * cmask,
                         None if ref is None else ref * cmask,
                         gids, tuple(p for p in prompts for _ in range(group_size)), tuple(texts),
                         elp[0] * cmask if elp else None)

    @torch.no_grad()
    def complete(self, prompts: list[str], *, greedy: bool = True, seed: int = 0,
                 batch_size: int = 64, on_batch: Callable[[int], Any] | None = None) -> list[str]:
        """Decoded completions (one per prompt) for evaluation; ``on_batch(n)`` after each batch
        of n prompts (a progress display's ``advance``)."""
        out = []
        for i in range(0, len(prompts), batch_size):
            _, _, cids, cmask = self.generate(prompts[i:i + batch_size], 1, seed=seed + i,
                                              greedy=greedy)
            out += self.tokenizer.batch_decode(
                cids * cmask + (1 - cmask) * self.tokenizer.pad_token_id, skip_special_tokens=True)
            if on_batch is not None:
                on_batch(len(prompts[i:i + batch_size]))
        return out

    def save(self, path: str | Path, model=None) -> None:
        """Adapter (LoRA) or full weights + tokenizer (save_pretrained), the prompt format, and
        the lineage of adapters merged underneath (so the folder reloads as trained)."""
        path = Path(path)
        (model or self.model).save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        self.cfg.prompt.save(path, self.tokenizer)
        write_lineage(path, self.cfg.model, self.merged)

    def load_trainable(self, path: str | Path) -> None:
        """Restore trainable weights saved by ``save`` (resume)."""
        from safetensors.torch import load_file

        path = Path(path)
        if self.uses_lora:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.model, load_file(path / "adapter_model.safetensors"))
        else:
            from transformers import AutoModelForCausalLM

            loaded = AutoModelForCausalLM.from_pretrained(path,
                                                          dtype=getattr(torch, self.cfg.dtype))
            self.model.load_state_dict(loaded.state_dict())
        self.weights_changed(base=not self.uses_lora)

