"""The ``hf`` rollout engine: one batched ``transformers`` ``generate`` call per request.

The reference path. With ``gen_dtype: policy`` and ``merge_lora: false`` it samples from the
policy's own module, exactly as the trainer sees it. Otherwise it samples from a plain copy of
the model in ``gen_dtype`` with any LoRA adapter folded in (``merged.py``), refreshed when the
policy's version moves: bf16 on a CPU with AVX-512 BF16 / AMX runs the decode matmuls about 4x
faster than fp32, and a merged copy skips the adapter's two extra matmuls per layer.
"""

from __future__ import annotations

import torch

from safegrpo.policies.engines.base import (
    ENGINES,
    EngineConfig,
    Generation,
    Sampling,
    truncate_at_stop,
)
from safegrpo.policies.engines.merged import MergedCopy
from safegrpo.policies.lm_ops import mask_positions


def left_pad(rows: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id lists -> left-padded ids [P, L] and attention mask [P, L]."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r):] = torch.tensor(r)
            mask[i, width - len(r):] = 1
    return ids.to(device), mask.to(device)


def shared_prefill(net, ids: torch.Tensor, mask: torch.Tensor, n: int):
    """The KV cache of every prompt but its last token, computed once per prompt [P] and
    repeated for its n samples [P * n]; ``generate`` then runs only the last prompt token and
    the completion. Positions follow the attention mask, as ``generate``'s own prefill does."""
    if ids.shape[1] < 2:
        return None
    head, head_mask = ids[:, :-1], mask[:, :-1]
    cache = net(input_ids=head, attention_mask=head_mask, position_ids=mask_positions(head_mask),
                use_cache=True).past_key_values
    if n > 1:
        cache.batch_repeat_interleave(n)
    return cache


@ENGINES.register("hf")
class HFEngine:
    def __init__(self, cfg: EngineConfig, policy_cfg=None):
        self.cfg = cfg
        self.copy = MergedCopy(cfg.gen_dtype) if self.uses_copy else None  # needs a settled dtype

    @property
    def uses_copy(self) -> bool:
        return self.cfg.gen_dtype != "policy" or self.cfg.merge_lora

    def sampler(self, policy, model=None):
        """The module to sample from: the policy's own, or the merged copy brought up to date."""
        model = model or policy.model
        if self.copy is None:
            return model
        return self.copy.sync(policy, model)

    @torch.no_grad()
    def generate(self, policy, prompt_ids: list[list[int]], sampling: Sampling,
                 model=None) -> Generation:
        tok = policy.tokenizer
        net = self.sampler(policy, model)
        ids, mask = left_pad(prompt_ids, tok.pad_token_id, next(net.parameters()).device)
        was_training = net.training
        net.eval()
        cache = shared_prefill(net, ids, mask, sampling.n) if self.cfg.share_prefill else None
        ids = ids.repeat_interleave(sampling.n, 0)
        mask = mask.repeat_interleave(sampling.n, 0)
        torch.manual_seed(sampling.seed)
        kw = dict(do_sample=not sampling.greedy, max_new_tokens=sampling.max_new_tokens,
                  pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                  return_dict_in_generate=True, output_logits=sampling.logprobs)
        if not sampling.greedy:
            kw.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
            if sampling.min_p > 0:
                kw["min_p"] = sampling.min_p
        if sampling.repetition_penalty != 1.0:
            kw["repetition_penalty"] = sampling.repetition_penalty
        if sampling.stop:
            kw.update(stop_strings=list(sampling.stop), tokenizer=tok)
        kw.update(sampling.extra)
        if cache is not None:
            kw["past_key_values"] = cache
        out = net.generate(input_ids=ids, attention_mask=mask, **kw)
        net.train(was_training)
        comp = out.sequences[:, ids.shape[1]:].tolist()

        def text_of(t: list[int]) -> str:
            return tok.decode(t)

        tokens = [truncate_at_stop(row, text_of, sampling.stop, tok.eos_token_id) for row in comp]
        logprobs = None
        if sampling.logprobs:
            # the sampling distribution before top-p/top-k: the one the trainer's log-probs use
            lp = torch.log_softmax(torch.stack(out.logits, 1).float() / sampling.temperature, -1)
            got = torch.gather(lp, -1, out.sequences[:, ids.shape[1]:].unsqueeze(-1)).squeeze(-1)
            logprobs = [got[i, :len(t)].tolist() for i, t in enumerate(tokens)]
        return Generation(tokens, logprobs, policy.version)

    def close(self) -> None:
        self.copy = None
