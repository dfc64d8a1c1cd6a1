"""Where a saved defender puts its decision, per tier of the hand-written *train* split.

For each policy folder (an SFT model, a GRPO checkpoint), one forward pass per prompt up to
``{"decision": "`` gives the probabilities of the first token of allow / transform / reject;
the table prints their means per tier and the share of prompts whose most likely first token is
reject. No sampling, no judge; never reads an evaluation split.

    python scripts/decision_probs.py runs/moderation_smollm/seed_*/sft/model
"""

from __future__ import annotations

import argparse

import torch

from safegrpo.envs.moderation.pools import load_handwritten
from safegrpo.policies.inference import load_for_inference

DECISIONS = ("allow", "transform", "reject")
PREFIX = '{"decision": "'


def first_tokens(tok) -> dict[str, int]:
    n = len(tok(PREFIX, add_special_tokens=False)["input_ids"])
    return {d: tok(PREFIX + d, add_special_tokens=False)["input_ids"][n] for d in DECISIONS}


@torch.no_grad()
def decision_probs(path: str, batch_size: int = 32) -> list[dict]:
    """One row per hand-written train prompt: tier, category and p(first token of each)."""
    pol = load_for_inference(path)
    tok, recs, out = pol.tokenizer, load_handwritten("train"), []
    ids = first_tokens(tok)
    side = tok.padding_side
    for i in range(0, len(recs), batch_size):
        batch = recs[i:i + batch_size]
        enc = tok([pol.render(r.prompt) + PREFIX for r in batch], return_tensors="pt",
                  padding=True, add_special_tokens=False)
        logits = pol.model(**enc).logits
        last = (enc["attention_mask"].sum(1) - 1 if side == "right"
                else torch.full((len(batch),), enc["input_ids"].shape[1] - 1))
        probs = logits[torch.arange(len(batch)), last].softmax(-1)
        out += [{"tier": r.tier, "category": r.category,
                 **{d: float(p[t]) for d, t in ids.items()}}
                for r, p in zip(batch, probs, strict=True)]
    return out


def summary(rows: list[dict]) -> list[tuple[str, dict[str, float]]]:
    out = []
    for tier in ("T1", "T2", "T3", "benign"):
        sub = [r for r in rows if r["tier"] == tier]
        top = sum(max(DECISIONS, key=lambda d: r[d]) == "reject" for r in sub) / len(sub)
        out.append((tier, {**{d: sum(r[d] for r in sub) / len(sub) for d in DECISIONS},
                           "top_reject": top}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", help="saved policy folders")
    args = ap.parse_args()
    print("| policy | tier | p(allow) | p(transform) | p(reject) | top is reject |")
    print("|---|---|---|---|---|---|")
    for path in args.paths:
        for tier, m in summary(decision_probs(path)):
            print(f"| {path} | {tier} | {m['allow']:.3f} | {m['transform']:.3f} | "
                  f"{m['reject']:.3f} | {m['top_reject']:.3f} |")


if __name__ == "__main__":
    main()
