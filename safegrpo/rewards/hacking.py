"""Anti-reward-hacking penalties (pure functions on strings; each returns Tensor[B] <= 0).

Each blocks a concrete exploit, shown in tests/rewards/test_hacking.py:
- ``group_diversity``: the group collapses onto one rewrite (all G samples emit the same
  text, so GRPO gets no signal and the policy stops exploring) -> penalise mean pairwise
  similarity above a threshold.
- ``keyword_preservation``: a "transform" that copies the unsafe prompt verbatim or keeps
  its unsafe keywords (de-obfuscated) still collects the transform reward -> penalise.
- ``ngram_repetition``: padding a rewrite with repeated n-grams ("a calm scene a calm scene")
  to look long and safe -> penalise the repeated n-gram fraction.
- ``length_sanity``: one-word rewrites ("flowers") or essays far longer than the prompt.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

import torch
from torch import Tensor

from safegrpo.core.text import canonical_text

_LEET = str.maketrans(
    {"4": "a", "3": "e", "1": "i", "0": "o", "5": "s", "7": "t", "@": "a", "$": "s"}
)


def normalize_text(text: str) -> str:
    """Canonical form (homoglyphs, invisible characters, fullwidth, combining marks undone), then
    lowercase, undo leetspeak, join single letters split by spaces/dots/stars ("b l o o d")."""
    t = canonical_text(text).lower().translate(_LEET)
    t = re.sub(r"\b(?:[a-z][\s.*_-]){2,}[a-z]\b", lambda m: re.sub(r"[\s.*_-]", "", m.group(0)), t)
    t = re.sub(r"(.)\1{2,}", r"\1\1", t)
    return t


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9*]+", normalize_text(text))


_RUNS = re.compile(r"(.)\1+")


def _dedup(token: str) -> str:
    return _RUNS.sub(r"\1", token)


def unsafe_keywords(text: str, lexicon: Sequence[str]) -> set[str]:
    """Lexicon words present in ``text``, also when spelled with up to 2 extra letters
    ("aperson" from "a p e r s o n"), stars for letters ("bl**d") or doubled letters ("ffire").

    Linear in the number of tokens: each token is expanded once into the substrings a keyword
    could be, instead of testing every (token, keyword) pair."""
    toks = set(words(text))
    lex = set(lexicon)
    near = {t[i:i + len(t) - d] for t in toks for d in range(3) for i in range(d + 1)}
    dedup = {_dedup(t) for t in toks}
    starred: dict[int, list[str]] = {}
    for t in toks:
        if "*" in t:
            starred.setdefault(len(t), []).append(t)
    hits = lex & near
    for kw in lex - hits:
        if _dedup(kw) in dedup or any(all(a == b or a == "*" for a, b in zip(t, kw, strict=True))
                                      for t in starred.get(len(kw), ())):
            hits.add(kw)
    return hits


def keyword_preservation(originals: Sequence[str], rewrites: Sequence[str | None],
                         lexicon: Sequence[str], *, copy_threshold: float = 0.9) -> Tensor:
    """[B] in [0, 1]: max(fraction of the original's unsafe keywords kept, 1 if near-verbatim copy).

    None rewrites (no transform) score 0."""
    out = []
    for orig, rw in zip(originals, rewrites, strict=True):
        if not rw:
            out.append(0.0)
            continue
        copy = difflib.SequenceMatcher(None, normalize_text(orig), normalize_text(rw)).ratio()
        kws = unsafe_keywords(orig, lexicon)
        kept = len(kws & unsafe_keywords(rw, lexicon)) / len(kws) if kws else 0.0
        out.append(max(kept, 1.0 if copy >= copy_threshold else 0.0))
    return torch.tensor(out)


def repeated_share(tokens: Sequence[str], n: int = 2) -> float:
    """1 - distinct n-grams / total n-grams of one token list (0 with fewer than 2 n-grams)."""
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if len(grams) > 1 else 0.0


def ngram_repetition(texts: Sequence[str | None], n: int = 2) -> Tensor:
    """[B] in [0, 1): ``repeated_share`` of each text's words (canonical form, no
    leetspeak undo)."""
    return torch.tensor(
        [
            repeated_share(re.findall(r"[a-z0-9]+", canonical_text(t or "").lower()), n)
            for t in texts
        ]
    )


def length_violation(originals: Sequence[str], rewrites: Sequence[str | None], *,
                     min_words: int = 3, max_ratio: float = 3.0) -> Tensor:
    """[B] in [0, 1]: how far a rewrite is outside [min_words, max_ratio * len(original)] words."""
    out = []
    for orig, rw in zip(originals, rewrites, strict=True):
        if not rw:
            out.append(0.0)
            continue
        n, cap = len(words(rw)), max_ratio * max(len(words(orig)), 1)
        if n < min_words:
            out.append((min_words - n) / min_words)
        elif n > cap:
            out.append(min((n - cap) / cap, 1.0))
        else:
            out.append(0.0)
    return torch.tensor(out)


def _jaccard(a: str, b: str) -> float:
    sa, sb = set(words(a)), set(words(b))
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def group_similarity(rewrites: Sequence[str | None], group_ids: Tensor) -> Tensor:
    """[B]: mean Jaccard similarity of each rewrite to the other rewrites of its group
    (0 where fewer than two rewrites exist in the group)."""
    out = torch.zeros(len(rewrites))
    gids = group_ids.tolist()
    for i, rw in enumerate(rewrites):
        if not rw:
            continue
        mates = [
            rewrites[j]
            for j in range(len(rewrites))
            if j != i and gids[j] == gids[i] and rewrites[j]
        ]
        if mates:
            out[i] = sum(_jaccard(rw, m) for m in mates) / len(mates)
    return out


def group_diversity(
    rewrites: Sequence[str | None], group_ids: Tensor, *, threshold: float = 0.8
) -> Tensor:
    """[B] in [0, 1]: similarity above ``threshold``, rescaled to [0, 1]."""
    sim = group_similarity(rewrites, group_ids)
    return ((sim - threshold) / (1 - threshold)).clamp(min=0.0)
