"""Without a held-out judge no rewrite is called independently safe (or unsafe)."""

import json

from safegrpo.eval.rewrites import add_independent


def test_no_heldout_judge_claims_nothing():
    rec = {"method": "grpo", "decision": "transform", "tier": "T1", "label": "unsafe",
           "completion": json.dumps({"decision": "transform", "rewrite": "a calm lake"})}
    (out,) = add_independent([rec], {}, "projection")
    assert out["rewrite"] == "a calm lake"
    assert out["rewrite_unsafe_indep"] is None  # was False: "0.000 unsafe" with no judge at all
    (flagged,) = add_independent([rec], {"j": lambda texts: [0.9] * len(texts)}, "projection")
    assert flagged["rewrite_unsafe_indep"] is True
