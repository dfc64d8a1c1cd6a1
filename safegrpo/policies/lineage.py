"""What a saved policy was built from: its base and the adapters merged into it, in order.

``safegrpo_policy.json`` sits next to every saved policy. Local paths are stored relative to the
saved folder (a run folder moved together with its base keeps loading) and absolute (a run folder
moved away from a base that stayed put keeps loading); hub ids are stored as given.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

LINEAGE_FILE = "safegrpo_policy.json"


def write_lineage(folder: Path, base: str, merged: list[str]) -> None:
    """Record the base and the adapters merged into it; local paths both relative to ``folder``
    and absolute, so a moved run folder keeps loading."""
    def ref(p: str) -> str:
        q = Path(p)
        return os.path.relpath(q.resolve(), folder.resolve()) if q.exists() else p

    def absolute(p: str) -> str:
        q = Path(p)
        return str(q.resolve()) if q.exists() else p

    (folder / LINEAGE_FILE).write_text(json.dumps(
        {"base": ref(base), "merged_adapters": [ref(m) for m in merged],
         "absolute": {"base": absolute(base), "merged_adapters": [absolute(m) for m in merged]}},
        indent=1))


def _resolve(folder: Path, ref: str, absolute: str | None = None) -> str:
    cand = (folder / ref)
    if cand.exists():
        return str(cand.resolve())
    return absolute if absolute and Path(absolute).exists() else ref


def read_lineage(folder: Path) -> tuple[str | None, list[str]]:
    """-> (base, merged adapters) from ``safegrpo_policy.json``, or (None, []) if absent. Each
    local path is taken relative to ``folder`` when it exists there, else absolute."""
    p = folder / LINEAGE_FILE
    if not p.exists():
        return None, []
    rec = json.loads(p.read_text())
    merged = rec.get("merged_adapters", [])
    absolute = rec.get("absolute", {})
    abs_merged = absolute.get("merged_adapters", [None] * len(merged))
    return (_resolve(folder, rec["base"], absolute.get("base")),
            [_resolve(folder, m, a) for m, a in zip(merged, abs_merged, strict=True)])
