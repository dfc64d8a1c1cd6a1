"""The hand-written target responses: counts, labels, no duplicates, written apart from every
text the red-team scorers are fitted on, and clear errors on bad rows."""

import json
import re
from collections import Counter

import pytest

from safegrpo.envs.moderation.pools import load_pool, train_split
from safegrpo.envs.moderation.responses import CATEGORIES, load_responses, read_responses


def _words(text):
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def test_shipped_set_has_50_of_each_label_and_no_duplicates():
    recs = load_responses()
    labels = Counter(r.label for r in recs)
    assert labels["toxic"] >= 50 and labels["safe"] >= 50, labels
    norm = [" ".join(r.text.lower().split()) for r in recs]
    assert len(set(norm)) == len(norm), [t for t, k in Counter(norm).items() if k > 1]
    assert len({r.id for r in recs}) == len(recs)
    for label, cats in CATEGORIES.items():  # every category is there, with a few examples
        counts = Counter(r.category for r in recs if r.label == label)
        assert set(counts) == set(cats) and min(counts.values()) >= 10, (label, counts)


def test_responses_are_apart_from_what_the_scorers_are_fitted_on():
    """No response is (nearly) a text the red-team scorers fit on: the arena's training pools,
    their rewrites, the template pools and the refusals (token Jaccard <= 0.5)."""
    from safegrpo.recipes.redteam.scorer import REFUSALS

    fit = {t for r in [*train_split(), *load_pool()] for t in (r.prompt, r.rewrite)}
    fit_words = [_words(t) for t in fit | set(REFUSALS)]
    for r in load_responses():
        w = _words(r.text)
        worst = max(len(w & f) / len(w | f) for f in fit_words)
        assert worst <= 0.5, (r.id, r.text, worst)


@pytest.mark.parametrize("row, msg", [
    ({"id": "hw-resp-1", "text": "hi", "label": "nice", "category": "ordinary"}, "label 'nice'"),
    ({"id": "hw-resp-1", "text": "hi", "label": "toxic", "category": "ordinary"},
     "category 'ordinary' of a toxic response"),
    ({"id": "x", "text": "hi", "label": "safe", "category": "ordinary"}, "hw-resp-"),
    ({"id": "hw-resp-1", "text": "hi", "label": "safe", "category": "ordinary", "holdout": False},
     "holdout: true"),
    ({"id": "hw-resp-1", "text": "hi", "label": "safe", "category": "ordinary", "tone": "x"},
     "tone"),
])
def test_bad_rows_name_the_file_and_line(tmp_path, row, msg):
    good = {"id": "hw-resp-0", "text": "fine", "label": "safe", "category": "ordinary"}
    p = tmp_path / "r.jsonl"
    p.write_text(json.dumps(good) + "\n\n" + json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=rf"r\.jsonl:3: bad response record: .*{msg}"):
        read_responses(p)
