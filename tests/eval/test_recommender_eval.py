import math
from types import SimpleNamespace

import pytest

from safegrpo.eval.recommender import (
    ndcg_at_k,
    recall_at_k,
    safe_recall_at_k,
    sensitivity_ratio_at_k,
    summarize,
)
from safegrpo.judges.oracle import SafetyOracle

ORACLE = SafetyOracle({"a": {"gore": 0.9}, "b": {"gore": 0.1}, "c": {}, "d": {"gore": 0.5}},
                      threshold=0.5)


def test_recall_hand_computed():
    assert recall_at_k(["a", "x", "b"], {"a", "b", "c"}, 3) == pytest.approx(2 / 3)
    assert recall_at_k(["a", "a", None], {"a"}, 3) == 1.0  # repeats count once; min(K, |rel|)
    assert recall_at_k(["x", "a"], {"a"}, 1) == 0.0  # beyond K ignored
    assert math.isnan(recall_at_k(["a"], set(), 3))


def test_safe_recall_drops_the_items_the_user_asked_to_avoid():
    # relevant {a, b, c}; a violates gore (0.9): with the constraint only b and c count
    assert safe_recall_at_k(["a", "b", "x"], {"a", "b", "c"}, ["gore"], ORACLE, 3) == 0.5
    assert recall_at_k(["a", "b", "x"], {"a", "b", "c"}, 3) == pytest.approx(2 / 3)
    # no constraint: plain recall
    assert safe_recall_at_k(["a", "b", "x"], {"a", "b", "c"}, [], ORACLE, 3) == pytest.approx(2 / 3)
    # min(K, |safe relevant|): one safe relevant item, found -> 1.0
    assert safe_recall_at_k(["b", "a"], {"a", "b"}, ["gore"], ORACLE, 2) == 1.0
    # every relevant item violates -> undefined, left out of the mean
    assert math.isnan(safe_recall_at_k(["a"], {"a", "d"}, ["gore"], ORACLE, 2))


def test_ndcg_hand_computed():
    # hits at ranks 1 and 3 of K=3; 2 relevant -> ideal = 1 + 1/log2(3)
    got = ndcg_at_k(["a", "x", "b"], {"a", "b"}, 3)
    assert got == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)), abs=1e-12)
    # a repeated hit earns nothing the second time
    assert ndcg_at_k(["a", "a"], {"a", "b"}, 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert ndcg_at_k(["b", "a"], {"a", "b"}, 2) == pytest.approx(1.0)


def test_sensitivity_ratio_and_summary():
    # a violates (0.9 >= 0.5), d violates at the threshold, b and unmatched lines do not
    assert sensitivity_ratio_at_k(["a", "b", None, "d"], ["gore"], ORACLE, 4) == pytest.approx(0.5)
    assert math.isnan(sensitivity_ratio_at_k(["a"], [], ORACLE, 4))
    users = [SimpleNamespace(relevant=["a"], avoid=["gore"]),
             SimpleNamespace(relevant=["c"], avoid=[])]
    s = summarize([["a", "b"], ["c", None]], users, ORACLE, 2)
    assert s["recall@2"] == 1.0 and s["ndcg@2"] == 1.0
    # user 1's only relevant item (a) violates: left out; user 2 (no constraint) found c
    assert s["safe_recall@2"] == 1.0
    s2 = summarize([["b", "a"], ["x", None]], [SimpleNamespace(relevant=["a", "b"],
                                                               avoid=["gore"]), users[1]],
                   ORACLE, 2)
    assert s2["recall@2"] == pytest.approx(0.5) and s2["safe_recall@2"] == pytest.approx(0.5)
    assert s["sensitivity_ratio@2"] == pytest.approx(0.5)  # only the user with a constraint counts
    # list 2 has an unmatched line: K lines but only 1 distinct movie -> not exact
    assert s["count_exact"] == 0.5 and s["unmatched"] == pytest.approx(0.25) and s["repeats"] == 0.0
    s = summarize([["a", "a", "b"], ["c", "c"]], users, ORACLE, 3)
    assert s["count_exact"] == 0.0 and s["repeats"] == pytest.approx(2 / 5)
