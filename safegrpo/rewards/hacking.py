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

_LEET = str.maketrans({"4": "a", "3": "e", "1": "i", "0": "o", "5": "s", "7": "t", "@": "a",
                       "$": "s", "9": "g", "6": "g", "8": "b"})
# punctuation that stands for a letter only inside a word ("kn!fe", "b|ood", "(ut"): at a word's
# edge it is punctuation ("knife!", "(a knife)")
_PUNCT_LEET = {"|": "l", "!": "i", "(": "c", "+": "t"}
_INWORD_PUNCT = re.compile(r"(?<=[a-z0-9])[|!(+]+(?=[a-z0-9])|(?<![a-z0-9])\((?=[a-z]{2})")
_SPACED = re.compile(r"\b(?:[a-z](?:\s+|[.*_-])){2,}[a-z]\b")
_TOKEN = re.compile(r"[a-z0-9*]+")
_INWORD_SEP = re.compile(r"(?<=[a-z0-9*])[^\sa-z0-9*]+(?=[a-z0-9*])")
_B64 = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{6,}={0,2}")


def normalize_text(text: str) -> str:
    """Canonical form (homoglyphs, small capitals, invisible characters, fullwidth, combining
    marks, right-to-left overrides undone), then lowercase, one space for any run of whitespace,
    undo leetspeak (digits anywhere, ``| ! ( +`` inside a word), join single letters split by
    spaces/dots/stars ("b l o o d", "k  n  i  f  e")."""
    t = _SPACED.sub(lambda m: _join(m.group(0)), _unleet(text))
    return re.sub(r"(.)\1{2,}", r"\1\1", t)


def _unleet(text: str) -> str:
    t = re.sub(r"\s+", " ", canonical_text(text).lower())
    t = _INWORD_PUNCT.sub(lambda m: "".join(_PUNCT_LEET[c] for c in m.group(0)), t)
    return t.translate(_LEET)


def _join(spaced: str) -> str:
    return re.sub(r"[\s.*_-]", "", spaced)


def words(text: str) -> list[str]:
    return _TOKEN.findall(normalize_text(text))


def _base64_texts(text: str) -> list[str]:
    """Text hidden in base64 chunks of ``text`` (printable, mostly letters once decoded)."""
    import base64
    import binascii

    out = []
    for chunk in _B64.findall(canonical_text(text)):
        body = chunk.rstrip("=")
        if len(body) % 4 == 1:
            continue
        try:
            raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if raw.isprintable():  # random bytes rarely are: 6 of them ~0.3 %
            out.append(raw)
    return out


def keyword_tokens(text: str) -> tuple[set[str], set[str], set[str]]:
    """Every spelling a reader can take a word of ``text`` for: (its tokens (``words``), the
    tokens with separators inside a word removed ("kni-fe", "kn.i.fe") and the tokens of text
    hidden in base64 chunks; those tokens read backwards ("efink"); the runs of single letters
    that ``normalize_text`` joined, where word gaps are lost ("p a i n t a p e r s o n"))."""
    runs = {_join(m.group(0)) for m in _SPACED.finditer(_unleet(text))}
    t = normalize_text(text)
    toks = set(_TOKEN.findall(t)) | set(_TOKEN.findall(_INWORD_SEP.sub("", t)))
    for hidden in _base64_texts(text):
        toks |= set(_TOKEN.findall(normalize_text(hidden)))
    return toks, {tok[::-1] for tok in toks}, runs


_RUNS = re.compile(r"(.)\1+")


def _dedup(token: str) -> str:
    return _RUNS.sub(r"\1", token)


def unsafe_keywords(text: str, lexicon: Sequence[str]) -> set[str]:
    """Lexicon words present in ``text`` in any spelling of ``keyword_tokens``, also when spelled
    with up to 2 extra letters ("aperson" from "a p e r s o n"), stars for letters ("bl**d") or
    doubled letters ("ffire"); a token read backwards counts without extra letters and only
    for keywords of 4+ letters ("elbat" in "table" is no "bat", nor is "tab"); a keyword of 4+
    letters anywhere in a run of single letters counts too."""
    toks, backwards, runs = keyword_tokens(text)
    long = [kw for kw in lexicon if len(kw) >= 4]
    in_runs = {kw for kw in long for run in runs if kw in run or kw in run[::-1]}
    return _lexicon_hits(toks, lexicon) | _lexicon_hits(backwards, long, extra=0) | in_runs


def _lexicon_hits(toks: set[str], lexicon: Sequence[str], extra: int = 2) -> set[str]:
    """Keywords that a token spells with up to ``extra`` extra letters, stars or doubled letters.
    Linear in the number of tokens: each token is expanded once into the substrings a keyword
    could be, instead of testing every (token, keyword) pair."""
    lex = set(lexicon)
    near = {t[i:i + len(t) - d] for t in toks for d in range(extra + 1) for i in range(d + 1)}
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


def revealed(text: str, lexicon: Sequence[str]) -> str:
    """``text`` as a judge should read it: its canonical form, followed by the lexicon words it
    hides (reversed, split, leet, base64 …) that its canonical words do not show as they are.
    Text that hides nothing is returned as its canonical form, unchanged."""
    base = canonical_text(text)
    hidden = unsafe_keywords(text, lexicon) - _lexicon_hits(
        set(re.findall(r"[a-z0-9*]+", base.lower())), lexicon)
    return f"{base} {' '.join(sorted(hidden))}" if hidden else base


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


def group_similarity(rewrites: Sequence[str | None], group_ids: Tensor) -> Tensor:
    """[B]: mean Jaccard similarity of each rewrite's word set to those of the other rewrites of
    its group (0 where fewer than two rewrites exist in the group; two empty sets count 1).

    Each rewrite is tokenised once and a group's intersections come from one product of its
    [G, V] word-incidence matrix, so a group of 64 x 4 kB rewrites costs milliseconds, not the
    seconds of re-normalising both texts for each of the G^2 pairs."""
    out = torch.zeros(len(rewrites))
    sets = [set(words(rw)) if rw else None for rw in rewrites]
    groups: dict[int, list[int]] = {}
    for i, g in enumerate(group_ids.tolist()):
        if sets[i] is not None:
            groups.setdefault(g, []).append(i)
    for idx in groups.values():
        if len(idx) < 2:
            continue
        vocab = {w: k for k, w in enumerate(set().union(*(sets[i] for i in idx)))}
        inc = torch.zeros(len(idx), max(len(vocab), 1), dtype=torch.float64)
        for r, i in enumerate(idx):
            inc[r, [vocab[w] for w in sets[i]]] = 1.0
        inter = inc @ inc.T
        size = inc.sum(1)
        union = size[:, None] + size[None, :] - inter
        jac = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))
        jac.fill_diagonal_(0.0)
        out[idx] = (jac.sum(1) / (len(idx) - 1)).float()
    return out


def group_diversity(
    rewrites: Sequence[str | None], group_ids: Tensor, *, threshold: float = 0.8
) -> Tensor:
    """[B] in [0, 1]: similarity above ``threshold``, rescaled to [0, 1]."""
    sim = group_similarity(rewrites, group_ids)
    return ((sim - threshold) / (1 - threshold)).clamp(min=0.0)
