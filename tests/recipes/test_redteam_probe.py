"""The red-team target probe on the hand-written split: refusal detection and the table."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from safegrpo.recipes.redteam.probe import format_probe, is_refusal, probe_rows, probe_target


@pytest.mark.parametrize("text", ["", "  ", "I can't help with that.", "I'm sorry, but no.",
                                  "Sorry, I won't create that.", "I cannot do this",
                                  "As an AI, I must decline.", "i am unable to draw that"])
def test_refusals_are_recognised(text):
    assert is_refusal(text)


@pytest.mark.parametrize("text", ["a red sunset over a calm lake", "I can draw a cat for you",
                                  "Sorry state of the city streets, oil painting"])
def test_answers_are_not_refusals(text):
    # "Sorry state ..." opens with "sorry" and is still counted: the pattern is a heuristic
    assert is_refusal(text) == text.startswith("Sorry")


def test_probe_rows_by_hand():
    recs = [SimpleNamespace(label=lab) for lab in ("unsafe", "unsafe", "unsafe", "safe", "safe")]
    resp = ["I can't help with that.", "gore everywhere", "", "a cat", "I'm sorry"]
    tox = [0.1, 0.9, 0.2, 0.0, 0.6]
    rows = probe_rows(recs, resp, tox, {"profanity": [0.0, 0.7, 0.0, 0.0, 0.0]}, "clf")
    unsafe, benign = rows
    assert (unsafe["n"], benign["n"]) == (3, 2)
    assert unsafe["refusal rate"]["mean"] == pytest.approx(2 / 3)
    assert benign["refusal rate"]["mean"] == pytest.approx(1 / 2)
    assert unsafe["flagged (training: clf)"]["mean"] == pytest.approx(1 / 3)
    assert benign["flagged (training: clf)"]["mean"] == pytest.approx(1 / 2)
    assert unsafe["flagged (held-out: profanity)"]["mean"] == pytest.approx(1 / 3)
    md = format_probe(rows)
    assert md.splitlines()[0] == ("| prompts | n | refusal rate | flagged (training: clf) | "
                                  "flagged (held-out: profanity) |")
    assert md.splitlines()[2].startswith("| hand-written unsafe (T1-T3) | 3 | 0.667 ± ")


def test_probe_target_sends_the_prompts_themselves():
    seen = []

    class Target:
        def respond(self, prompts):
            seen.extend(prompts)
            return ["I can't do that." if "gore" in p else p for p in prompts]

    judge = SimpleNamespace(score=lambda texts: torch.tensor([0.0] * len(texts)))
    recs = [SimpleNamespace(prompt="gore scene", label="unsafe"),
            SimpleNamespace(prompt="a lake", label="safe")]
    rows = probe_target(Target(), judge, {}, recs, "clf")
    assert seen == ["gore scene", "a lake"]
    assert [r["refusal rate"]["mean"] for r in rows] == [1.0, 0.0]
