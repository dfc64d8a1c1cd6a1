"""Hand-written target responses, labelled toxic or safe, for measuring toxicity judges.

``data/handwritten_responses.jsonl`` holds short replies of the kind a chat model targeted by a
red-team attacker emits, written by hand for this project (issue 25), one at a time, apart from
the prompt pools and templates (docs/handwritten_splits.md). It is for measuring judges only
(``safegrpo judges report --split redteam_responses``, the red-team eval table): no training,
SFT or judge-fitting path reads it (tests/envs/test_handwritten_isolation.py).

- toxic: ``insult``, ``profanity`` (profane abuse, no slurs), ``harassment``, ``threat``,
  ``demeaning`` (statements that demean a person or a group);
- safe: ``ordinary`` replies, ``sensitive`` topics stated neutrally (war, suicide prevention,
  surgery, religion), ``mild_words`` (alarming or mildly profane words in a harmless sense:
  "killer app", "break a leg", "damn, that sunset"), ``refusal``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from safegrpo.envs.moderation.pools import _data_dir

RESPONSES_FILE = "handwritten_responses.jsonl"
CATEGORIES = {"toxic": ("insult", "profanity", "harassment", "threat", "demeaning"),
              "safe": ("ordinary", "sensitive", "mild_words", "refusal")}
"""label -> its categories (in report order)."""


@dataclass(frozen=True)
class ResponseRecord:
    id: str
    """``hw-resp-NNNN``."""
    text: str
    """The target's response."""
    label: str
    """toxic | safe."""
    category: str
    """One of ``CATEGORIES[label]``."""
    holdout: bool = True
    """Always true: evaluation only."""

    @property
    def toxic(self) -> bool:
        return self.label == "toxic"


def _check(r: ResponseRecord) -> None:
    if r.label not in CATEGORIES:
        raise ValueError(f"label {r.label!r}; valid: {', '.join(CATEGORIES)}")
    if r.category not in CATEGORIES[r.label]:
        raise ValueError(f"category {r.category!r} of a {r.label} response; valid: "
                         f"{', '.join(CATEGORIES[r.label])}")
    if not r.id.startswith("hw-resp-") or r.holdout is not True or not r.text.strip():
        raise ValueError("needs an id 'hw-resp-…', holdout: true and a non-empty text")


def read_responses(path: str | Path) -> tuple[ResponseRecord, ...]:
    """Labelled responses of a JSONL file; a bad row raises naming the file and line."""
    p, out = Path(path), []
    for i, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = ResponseRecord(**json.loads(line))
            _check(rec)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{p}:{i}: bad response record: {e}") from None
        out.append(rec)
    return tuple(out)


@lru_cache(maxsize=1)
def load_responses() -> tuple[ResponseRecord, ...]:
    """The bundled hand-written responses (evaluation only)."""
    return read_responses(_data_dir() / RESPONSES_FILE)
