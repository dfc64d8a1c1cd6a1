"""Two-stage bootstrap intervals: hand-computed cases and a seeded check against scipy."""

import math

import numpy as np
import pytest

from safegrpo.eval.intervals import bootstrap_interval, format_interval


def test_constant_data_gives_a_zero_width_interval():
    iv = bootstrap_interval([[0.25] * 40, [0.25] * 30, [0.25] * 10], n_boot=500)
    assert iv.mean == pytest.approx(0.25) and iv.hi - iv.lo == pytest.approx(0.0, abs=1e-12)
    assert (iv.n, iv.seeds) == (80, 3) and iv.format() == "0.250 ± 0.000"


def test_two_values_one_seed_hand_computed():
    # resampled means of [0, 1] are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4, so the 2.5 % and
    # 97.5 % percentiles are 0 and 1
    iv = bootstrap_interval([[0.0, 1.0]], n_boot=4000, seed=3)
    assert (iv.mean, iv.lo, iv.hi) == (0.5, 0.0, 1.0)
    assert format_interval(iv) == "0.500 ± 0.500"


def test_seed_stage_is_resampled():
    # every seed constant, so only the seed draw varies: means 0, 0.5, 1 as above
    iv = bootstrap_interval([[0.0] * 20, [1.0] * 5], n_boot=4000, seed=1)
    assert (iv.mean, iv.lo, iv.hi, iv.n, iv.seeds) == (0.5, 0.0, 1.0, 25, 2)
    # pooling the same 25 prompts into one seed hides the seed-to-seed variation
    pooled = bootstrap_interval([[0.0] * 20 + [1.0] * 5], n_boot=4000, seed=1)
    assert pooled.hi - pooled.lo < 0.5 * (iv.hi - iv.lo)


def test_missing_values_are_left_out_and_empty_is_none():
    iv = bootstrap_interval([[1.0, None, math.nan, 1.0], [None], []], n_boot=100)
    assert (iv.mean, iv.n, iv.seeds) == (1.0, 2, 1)
    assert bootstrap_interval([[None], []]) is None and format_interval(None) == "-"
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval([[1.0]], level=1.5)


def test_one_seed_matches_scipy_percentile_bootstrap():
    stats = pytest.importorskip("scipy.stats")
    data = np.random.default_rng(0).binomial(1, 0.3, size=150).astype(float)
    ours = bootstrap_interval([data.tolist()], n_boot=20000, seed=0)
    ref = stats.bootstrap((data,), np.mean, n_resamples=20000, method="percentile",
                          confidence_level=0.95, rng=np.random.default_rng(1))
    ci = ref.confidence_interval
    assert ours.mean == pytest.approx(data.mean())
    assert ours.lo == pytest.approx(ci.low, abs=0.01)
    assert ours.hi == pytest.approx(ci.high, abs=0.01)


def test_same_seed_same_interval():
    groups = [[0, 1, 1, 0, 1], [1, 1, 1, 0]]
    assert bootstrap_interval(groups, seed=7) == bootstrap_interval(groups, seed=7)
