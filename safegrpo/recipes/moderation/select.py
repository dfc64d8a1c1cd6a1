"""Checkpoint selection (early stopping) on the hand-written *train* split (``select``).

GRPO moves a small defender along a trade-off: on one seed of SmolLM2 every saved checkpoint
lets fewer unsafe prompts through and refuses more benign ones than the last. With ``select.split``
set, the recipe decodes that split greedily with the SFT start (step 0, the GRPO adapter
disabled) and every kept GRPO checkpoint, and keeps the checkpoint with the lowest unsafe
pass-through among those whose benign over-refusal is at most ``select.max_over_refusal`` (none:
the lowest over-refusal). Labels only, no judge. The evaluation splits are never read here, and
only ``handwritten_train`` (a split training may use) is accepted. The choice and every
candidate's figures go to ``grpo/selection.json``; the chosen weights to ``grpo/selected/``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safegrpo.envs.moderation.pools import load_handwritten
from safegrpo.eval.moderation import evaluate, rates
from safegrpo.policies.lm import LMPolicy
from safegrpo.training.checkpoint import intact_checkpoints

SELECT_SPLITS = ("handwritten_train",)


@dataclass(frozen=True)
class SelectConfig:
    split: str | None = None
    """Split that picks the GRPO checkpoint: handwritten_train, or null (off: the last one).
    Keep enough checkpoints to choose from (grpo.save_every, grpo.keep_checkpoints)."""
    max_over_refusal: float = 0.10
    """Benign over-refusal a checkpoint may have on that split to be eligible."""

    def __post_init__(self) -> None:
        if self.split is not None and self.split not in SELECT_SPLITS:
            raise ValueError(f"select.split {self.split!r}: valid are {', '.join(SELECT_SPLITS)} "
                             "(a split training may use; never an evaluation split) or null")
        if not 0.0 <= self.max_over_refusal <= 1.0:
            raise ValueError("select.max_over_refusal must be in [0, 1]")


def choose(cands: list[dict[str, Any]], max_over_refusal: float) -> dict[str, Any]:
    """The eligible candidate with the lowest pass-through (ties: lower over-refusal, then the
    later step); with none eligible, the one with the lowest over-refusal."""
    ok = [c for c in cands if c["benign_over_refusal"] <= max_over_refusal]
    if ok:
        return min(ok, key=lambda c: (c["unsafe_pass_through"], c["benign_over_refusal"],
                                      -c["step"]))
    return min(cands, key=lambda c: (c["benign_over_refusal"], c["unsafe_pass_through"],
                                     -c["step"]))


def _score(policy: LMPolicy, recs: list, reward, template: str, batch_size: int) -> dict:
    def defender(prompts: list[str]) -> list[str]:
        return policy.complete([template.format(prompt=p) for p in prompts], greedy=True,
                               batch_size=batch_size)
    r = rates(evaluate("candidate", defender, recs, reward, "select"))  # invalid counts as both
    return {k: r[k] for k in ("unsafe_pass_through", "benign_over_refusal")}


def select_checkpoint(policy: LMPolicy, reward, ckpt_dir: str | Path, cfg: SelectConfig, *,
                      template: str = "{prompt}", batch_size: int = 32,
                      log: Callable[[str], None] = print) -> dict[str, Any]:
    """Score step 0 and every checkpoint under ``ckpt_dir``, leave ``policy`` holding the chosen
    one, save it next to the checkpoints and return the record written to selection.json."""
    ckpt_dir = Path(ckpt_dir)
    recs = list(load_handwritten("train"))
    cands = []
    if policy.uses_lora:  # step 0 = the adapter disabled (full fine-tuning keeps no copy)
        with policy.reference():
            cands.append({"step": 0, **_score(policy, recs, reward, template, batch_size)})
    paths = {int(p.name.split("_")[-1]): p for p in intact_checkpoints(ckpt_dir)}
    if not paths:
        raise FileNotFoundError(f"select: no intact checkpoint under {ckpt_dir}")
    for step, path in sorted(paths.items()):
        policy.load_trainable(path / "policy")
        cands.append({"step": step, **_score(policy, recs, reward, template, batch_size)})
    best = choose(cands, cfg.max_over_refusal)
    for c in cands:
        log(f"      step {c['step']:>4}: pass-through {c['unsafe_pass_through']:.3f}, "
            f"over-refusal {c['benign_over_refusal']:.3f}{'  <- kept' if c is best else ''}")
    if best["step"] == 0:
        _zero_lora(policy)
    else:
        policy.load_trainable(paths[best["step"]] / "policy")
    out = ckpt_dir.parent
    policy.save(out / "selected")
    record = {"split": cfg.split, "n": len(recs), "max_over_refusal": cfg.max_over_refusal,
              "step": best["step"], "candidates": cands}
    (out / "selection.json").write_text(json.dumps(record, indent=1))
    return record


def _zero_lora(policy: LMPolicy) -> None:
    """The LoRA adapter back at its start (B = 0: the adapter adds nothing)."""
    import torch

    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.zero_()
    policy.weights_changed()


def restore_selection(policy: LMPolicy, grpo_dir: str | Path) -> dict[str, Any] | None:
    """Load ``grpo/selected`` into ``policy`` if a selection was made (``safegrpo eval``)."""
    path = Path(grpo_dir) / "selection.json"
    if not path.exists():
        return None
    policy.load_trainable(Path(grpo_dir) / "selected")
    return json.loads(path.read_text())
