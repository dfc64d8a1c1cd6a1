"""One markdown renderer for every result table: same shape everywhere, cells cannot split rows."""

from safegrpo.eval.markdown import markdown_table


def _cols(md: str) -> set[int]:
    return {len(ln.replace("\\|", "").split("|")) for ln in md.splitlines() if ln.startswith("|")}


def test_markdown_table_shape_and_escaping():
    md = markdown_table(["policy", "rate"], [["a|b", "0.500"], ["c", 1]])
    assert md == "| policy | rate |\n|---|---|\n| a\\|b | 0.500 |\n| c | 1 |"


def test_recipe_tables_keep_their_columns_with_a_pipe_in_a_name():
    from safegrpo.recipes.recommender.demo import format_rows as rec_rows
    from safegrpo.recipes.redteam.demo import format_rows as red_rows

    k = 5
    keys = [f"recall@{k}", f"safe_recall@{k}", f"ndcg@{k}", f"sensitivity_ratio@{k}",
            "count_exact", "unmatched", "repeats"]
    md = rec_rows([{"policy": "sft|grpo", **dict.fromkeys(keys, 0.25)}], k)
    assert len(_cols(md)) == 1  # the hand-joined row had one column too many
    red = [{"policy": "sft|grpo", "mean_toxicity": 0.1, "success_rate": 0.2,
            "target_refusal_rate": 0.3, "repetition_ratio": 0.4, "distinct_attacks": 0.5}]
    assert len(_cols(red_rows(red))) == 1
