"""The embedded judge's operating curve on hand-computed scores, and defenders placed on it."""

import pytest

from safegrpo.eval.judge_curve import (
    curve_pass_through,
    curve_report,
    format_curve_table,
    judge_score_records,
    not_below_line,
    operating_curve,
)


def score(label, p, split="handwritten"):
    return {"split": split, "id": f"{label}{p}", "tier": "T1" if label == "unsafe" else "benign",
            "label": label, "p_safe": p}


# two benign prompts (p_safe 0.9, 0.3), two unsafe (0.2, 0.6); reject when p_safe < t
SCORES = [score("safe", 0.9), score("safe", 0.3), score("unsafe", 0.2), score("unsafe", 0.6)]
# t = 0.2: none rejected       -> over-refusal 0,   pass-through 1
# t = 0.3: unsafe 0.2 rejected -> 0,   0.5
# t = 0.6: + benign 0.3        -> 0.5, 0.5
# t = 0.9: + unsafe 0.6        -> 0.5, 0
# t = 1.9: everything          -> 1,   0
CURVE = [(0.2, 0.0, 1.0), (0.3, 0.0, 0.5), (0.6, 0.5, 0.5), (0.9, 0.5, 0.0), (1.9, 1.0, 0.0)]


def test_curve_over_every_threshold():
    curve = operating_curve(SCORES)
    got = [v for c in curve for v in (c["threshold"], c["over_refusal"], c["pass_through"])]
    assert got == pytest.approx([v for row in CURVE for v in row])
    with pytest.raises(ValueError, match="unsafe and benign"):
        operating_curve(SCORES[:2])


def test_interpolated_pass_through_takes_the_lowest_at_a_vertical_drop():
    curve = operating_curve(SCORES)
    assert curve_pass_through(curve, 0.0) == 0.5  # (0, 1) and (0, 0.5): the lower one
    assert curve_pass_through(curve, 0.25) == 0.5  # flat segment (0, .5) -> (.5, .5)
    assert curve_pass_through(curve, 0.5) == 0.0
    assert curve_pass_through(curve, 0.75) == 0.0
    diagonal = operating_curve([score("safe", 0.5), score("unsafe", 0.5)])  # (0, 1) -> (1, 0)
    assert curve_pass_through(diagonal, 0.25) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="outside"):
        curve_pass_through(curve, 1.5)


def row(method, over, strict, unsafe=None, split="handwritten"):
    return {"split": split, "method": method, "tier": "all", "benign_over_refusal": over,
            "strict_pass_through": strict, "unsafe_pass_through": unsafe}


def test_defenders_below_and_not_below_the_curve():
    table = [row("good", 0.25, 0.4), row("bad", 0.5, 0.1), row("judge_threshold", 0.5, 0.0),
             row("labels_only", 0.0, None, unsafe=0.4),
             {**row("good", 0.25, 0.4), "tier": "T1"}, row("other_split", 0.0, 0.0, split="x")]
    rep = curve_report(SCORES, table)
    assert list(rep) == ["handwritten"] and rep["handwritten"]["n_unsafe"] == 2
    pts = {d["method"]: d for d in rep["handwritten"]["defenders"]}
    assert set(pts) == {"good", "bad", "judge_threshold", "labels_only"}
    assert pts["good"]["below"] and pts["good"]["judge_pass_through"] == 0.5
    assert not pts["bad"]["below"] and pts["bad"]["judge_pass_through"] == 0.0
    assert not pts["judge_threshold"]["below"]  # a point of the curve is not below it
    assert pts["labels_only"]["pass_metric"] == "unsafe_pass_through" and pts["labels_only"][
        "below"]  # 0.4 < 0.5 at over-refusal 0
    md = format_curve_table(rep)
    assert "| handwritten | good | 0.250 | 0.400 | 0.500 | yes |" in md
    assert "| handwritten | labels_only | 0.000 | 0.400 (labels) | 0.500 | yes |" in md
    assert not_below_line(rep, "good") is None
    line = not_below_line(rep, "bad", " Why.")
    assert line == ("The bad defender is not below the embedded judge's operating curve "
                    "(handwritten: pass-through 0.100 at over-refusal 0.500, the judge 0.000): "
                    "thresholding the judge alone does at least as well. Why.")


def test_judge_scores_are_read_per_split():
    from types import SimpleNamespace

    import torch

    class Judge:
        def score(self, texts):
            return torch.tensor([0.25 * len(t) for t in texts])

    recs = [SimpleNamespace(id="a", prompt="x", tier="T1", label="unsafe"),
            SimpleNamespace(id="b", prompt="xx", tier="benign", label="safe")]
    out = judge_score_records(Judge(), {"s1": recs, "s2": recs[1:]})
    assert [(r["split"], r["id"], r["p_safe"]) for r in out] == [
        ("s1", "a", 0.25), ("s1", "b", 0.5), ("s2", "b", 0.5)]


def test_plot_writes_a_png(tmp_path):
    from safegrpo.eval.plots import judge_curve_plot

    rep = curve_report(SCORES, [row("good", 0.25, 0.4), row("bad", 0.5, 0.1)])
    path = judge_curve_plot(rep, tmp_path / "judge_curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
