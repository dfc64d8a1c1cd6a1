"""What a saved policy was built from: its base and the adapters merged into it, in order.

``safegrpo_policy.json`` sits next to every saved policy. Local paths are stored relative to the
saved folder, so a moved run folder keeps loading; hub ids are stored as given.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

LINEAGE_FILE = "safegrpo_policy.json"


def write_lineage(folder: Path, base: str, merged: list[str]) -> None:
    """Record the base and the adapters merged into it; local paths relative to ``folder`` so a
    moved run folder keeps loading."""
    def ref(p: str) -> str:
        q = Path(p)
        return os.path.relpath(q.resolve(), folder.resolve()) if q.exists() else p

    (folder / LINEAGE_FILE).write_text(json.dumps(
        {"base": ref(base), "merged_adapters": [ref(m) for m in merged]}, indent=1))


def _resolve(folder: Path, ref: str) -> str:
    cand = (folder / ref)
    return str(cand.resolve()) if cand.exists() else ref


def read_lineage(folder: Path) -> tuple[str | None, list[str]]:
    """-> (base, merged adapters) from ``safegrpo_policy.json``, or (None, []) if absent."""
    p = folder / LINEAGE_FILE
    if not p.exists():
        return None, []
    rec = json.loads(p.read_text())
    return _resolve(folder, rec["base"]), [_resolve(folder, m) for m in rec.get("merged_adapters", [])]
