"""scripts/decision_probs.py reads the next-token distribution after the decision key."""

import pytest
import torch

from safegrpo.envs.moderation.pools import load_handwritten
from safegrpo.policies.inference import load_for_inference
from tests.script_module import load_script


def test_batched_probabilities_equal_one_prompt_alone(tiny_lm_path):
    dp = load_script("scripts/decision_probs.py", "decision_probs")
    rows = dp.decision_probs(tiny_lm_path, batch_size=7)  # padded batches of unequal prompts
    recs = load_handwritten("train")
    assert len(rows) == len(recs) == 297
    pol = load_for_inference(tiny_lm_path)
    ids = dp.first_tokens(pol.tokenizer)
    for i in (0, 5, 150):  # each alone: no padding at all
        enc = pol.tokenizer(pol.render(recs[i].prompt) + dp.PREFIX, return_tensors="pt",
                            add_special_tokens=False)
        with torch.no_grad():
            p = pol.model(**enc).logits[0, -1].softmax(-1)
        for d, t in ids.items():
            assert rows[i][d] == pytest.approx(float(p[t]), abs=1e-5)
    tiers = dict(dp.summary(rows))
    benign = [r for r in rows if r["tier"] == "benign"]
    top = sum(max(dp.DECISIONS, key=lambda d: r[d]) == "reject" for r in benign) / len(benign)
    assert tiers["benign"]["top_reject"] == top and set(tiers) == {"T1", "T2", "T3", "benign"}
