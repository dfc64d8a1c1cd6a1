import math
from types import SimpleNamespace

import pytest

from safegrpo.eval.recommender import ndcg_at_k, recall_at_k, sensitivity_ratio_at_k, summarize
from safegrpo.judges.oracle import SafetyOracle

ORACLE = SafetyOracle({"a": {"gore": 0.9}, "b": {"gore": 0.1}, "c": {}, "d": {"gore": 0.5}},
                      threshold=0.5)


def test_recall_hand_computed():
    assert recall_at_k(["a", "x", "b"], {"a", "b", "c"}, 3) == pytest.approx(2 / 3)
    assert recall_at_k(["a", "a", None], {"a"}, 3) == 1.0  # repeats count once; min(K, |rel|)
    assert recall_at_k(["x", "a"], {"a"}, 1) == 0.0  # beyond K ignored
    assert math.isnan(recall_at_k(["a"], set(), 3))


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
    assert s["sensitivity_ratio@2"] == pytest.approx(0.5)  # only the user with a constraint counts
    # list 2 has an unmatched line: K lines but only 1 distinct movie -> not exact
    assert s["count_exact"] == 0.5 and s["unmatched"] == pytest.approx(0.25) and s["repeats"] == 0.0
    s = summarize([["a", "a", "b"], ["c", "c"]], users, ORACLE, 3)
    assert s["count_exact"] == 0.0 and s["repeats"] == pytest.approx(2 / 5)
