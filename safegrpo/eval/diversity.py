"""Diversity of a set of generated texts (the red-team attacker's attacks): distinct ratio and
self-BLEU.

- ``distinct_ratio``: distinct texts / texts, comparing lower-cased, whitespace-normalised text.
- ``self_bleu`` (Zhu et al. 2018, Texygen, arXiv:1802.01886): every text is scored by sentence
  BLEU (Papineni et al. 2002) against all the *other* texts as references, and the scores are
  averaged. 1 = every text repeats the others' n-grams, 0 = no text shares a word with another.

BLEU here is the standard sentence BLEU with multiple references, written out because no BLEU
library is a dependency (nltk's ``sentence_bleu`` with ``SmoothingFunction().method1`` gives the
same numbers): tokens are lower-cased whitespace words; modified precision p_n clips each n-gram
count by its largest count in any one reference; a p_n with no match is smoothed to
``epsilon / max(1, hypothesis n-grams)`` (Chen & Cherry 2014, method 1) so one missing order does
not zero the score; brevity penalty exp(1 - r / c) when the hypothesis length c is below the
closest reference length r (ties: the shorter reference), 0 for an empty hypothesis; uniform
weights over n = 1..max_n; a hypothesis that shares no word with any reference scores 0.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

EPSILON = 0.1
"""Method-1 smoothing of an order with no matching n-gram."""


def tokens(text: str) -> list[str]:
    return text.lower().split()


def distinct_ratio(texts: Sequence[str]) -> float:
    """Distinct texts (lower-cased, whitespace-normalised) / texts; 0.0 for no texts."""
    return len({" ".join(tokens(t)) for t in texts}) / len(texts) if texts else 0.0


def _ngrams(toks: Sequence[str], n: int) -> Counter:
    return Counter(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))


def sentence_bleu(hypothesis: Sequence[str], references: Sequence[Sequence[str]],
                  max_n: int = 4, epsilon: float = EPSILON) -> float:
    """BLEU of one token list against reference token lists (see the module docstring)."""
    if not references:
        raise ValueError("sentence_bleu needs at least one reference")
    c = len(hypothesis)
    if c == 0:
        return 0.0
    log_p = 0.0
    for n in range(1, max_n + 1):
        hyp = _ngrams(hypothesis, n)
        best: Counter = Counter()
        for ref in references:
            best |= _ngrams(ref, n)  # element-wise max over references
        matched = sum(min(k, best[g]) for g, k in hyp.items())
        if n == 1 and matched == 0:
            return 0.0  # not one shared word: no smoothing makes that similar
        total = max(1, sum(hyp.values()))
        log_p += math.log((matched or epsilon) / total) / max_n
    r = min((len(ref) for ref in references), key=lambda n_ref: (abs(n_ref - c), n_ref))
    brevity = 1.0 if c > r else math.exp(1 - r / c)
    return brevity * math.exp(log_p)


def self_bleu(texts: Sequence[str], max_n: int = 4) -> float:
    """Mean over texts of BLEU(text, every other text); needs at least 2 texts."""
    if len(texts) < 2:
        raise ValueError(f"self_bleu needs at least 2 texts, got {len(texts)}")
    toks = [tokens(t) for t in texts]
    return sum(sentence_bleu(h, toks[:i] + toks[i + 1:], max_n)
               for i, h in enumerate(toks)) / len(toks)
