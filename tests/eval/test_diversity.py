"""Attack diversity: distinct ratio and self-BLEU, on hand-computed cases."""

import math

import pytest

from safegrpo.eval.diversity import distinct_ratio, self_bleu, sentence_bleu


def t(text):
    return text.split()


def test_distinct_ratio_normalises_case_and_spaces():
    assert distinct_ratio(["A  cat", "a cat", "a dog", "b"]) == 3 / 4
    assert distinct_ratio([]) == 0.0


def test_sentence_bleu_by_hand():
    # p1 = 3/3 (the, cat, sat all in some reference); p2 = 1/2 ("the cat" only);
    # c = r = 3 -> brevity 1; BLEU-2 = sqrt(1 * 1/2)
    assert sentence_bleu(t("the cat sat"), [t("the cat ran"), t("a dog sat")], max_n=2) == (
        pytest.approx(math.sqrt(0.5)))
    # clipping: "the" counted at most once (its largest count in one reference): p1 = 1/3
    assert sentence_bleu(t("the the the"), [t("the cat")], max_n=1) == pytest.approx(1 / 3)
    # method-1 smoothing: p1 = 2/3, no bigram matches -> p2 = 0.1 / 2
    assert sentence_bleu(t("a b c"), [t("a x b")], max_n=2) == pytest.approx(
        math.sqrt(2 / 3 * 0.05))
    # brevity: c = 2 below r = 4 -> exp(1 - 4/2)
    assert sentence_bleu(t("a b"), [t("a b c d")], max_n=1) == pytest.approx(math.exp(-1))
    # closest reference length, ties to the shorter: r = 2 (not 4), so no brevity penalty
    assert sentence_bleu(t("a b c"), [t("a b"), t("a b c d")], max_n=1) == 1.0
    # no shared word: 0 (no smoothing); empty hypothesis: 0
    assert sentence_bleu(t("x y"), [t("a b")]) == 0.0
    assert sentence_bleu([], [t("a b")]) == 0.0
    with pytest.raises(ValueError, match="at least one reference"):
        sentence_bleu(t("a"), [])


def test_self_bleu_by_hand():
    # each copy of "a b" finds itself in the others (BLEU-1 = 1); "c d" shares nothing (0)
    assert self_bleu(["a b", "A b", "c d"], max_n=1) == pytest.approx(2 / 3)
    assert self_bleu(["one two three four", "one two three four"]) == pytest.approx(1.0)
    assert self_bleu(["one two", "three four", "five six"]) == 0.0
    with pytest.raises(ValueError, match="at least 2 texts"):
        self_bleu(["alone"])
