#!/usr/bin/env python
"""Near-duplicate check for the hand-written moderation splits.

Token Jaccard = |A & B| / |A | B| over lower-cased word tokens. Fails (exit 1) when any
hand-written eval prompt has Jaccard > ``--max`` (default 0.5) with any hand-written train
prompt or any template prompt (``prompts.jsonl``), or when a split repeats a prompt.
Prints the closest pair per comparison so the margin is visible.

    python scripts/check_handwritten_overlap.py [--max 0.5]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "safegrpo" / "envs" / "moderation" / "data"
FILES = {"eval": "handwritten_eval.jsonl", "train": "handwritten_train.jsonl",
         "template": "prompts.jsonl"}


def tokens(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"[a-z0-9@$*!']+", text.lower()))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def closest(queries: Sequence[str], refs: Sequence[str], skip_self: bool = False
            ) -> list[tuple[float, str, str]]:
    """Per query: (max Jaccard over refs, query, closest ref); sorted, highest first."""
    ref_toks = [tokens(r) for r in refs]
    out = []
    for i, q in enumerate(queries):
        tq = tokens(q)
        best, arg = -1.0, ""
        for j, tr in enumerate(ref_toks):
            if skip_self and i == j:
                continue
            s = jaccard(tq, tr)
            if s > best:
                best, arg = s, refs[j]
        out.append((best, q, arg))
    return sorted(out, reverse=True)


def prompts(name: str, data: Path = DATA) -> list[str]:
    rows = [json.loads(x) for x in (data / FILES[name]).read_text().splitlines() if x.strip()]
    return [r["prompt"] for r in rows]


def check(max_jaccard: float = 0.5, data: Path = DATA) -> dict[str, float]:
    """Max Jaccard per comparison; raises ValueError naming the offending pair."""
    ev, tr, tp = prompts("eval", data), prompts("train", data), prompts("template", data)
    for name, split in (("eval", ev), ("train", tr)):
        if len(set(split)) != len(split):
            raise ValueError(f"hand-written {name} split repeats a prompt")
    report = {}
    for name, q, refs, self_ in (("eval~train", ev, tr, False), ("eval~template", ev, tp, False),
                                 ("train~template", tr, tp, False), ("eval~eval", ev, ev, True),
                                 ("train~train", tr, tr, True)):
        top = closest(q, refs, skip_self=self_)[0]
        report[name] = top[0]
        print(f"{name:15s} max Jaccard {top[0]:.3f}: {top[1]!r} ~ {top[2]!r}")
        if name.startswith("eval~") and name != "eval~eval" and top[0] > max_jaccard:
            raise ValueError(f"{name}: Jaccard {top[0]:.3f} > {max_jaccard}: "
                             f"{top[1]!r} ~ {top[2]!r}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max", type=float, default=0.5, help="largest allowed eval Jaccard")
    args = ap.parse_args(argv)
    try:
        check(args.max)
    except ValueError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
