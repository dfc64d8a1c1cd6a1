"""Recommendation environment data: catalog, users, prompts, and the list parser.

A completion is a numbered list "1. Title (Year)" ... ; ``parse_list`` maps each line to a
catalog id with fuzzy title matching (difflib ratio >= ``min_ratio`` on normalised titles) and a
year tolerance; a line that matches nothing is kept as ``None`` so its rank still counts.
"""

from __future__ import annotations

import difflib
import json
import random
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path

from safegrpo.judges.oracle import SafetyOracle


@dataclass(frozen=True)
class Movie:
    id: str
    title: str
    year: int
    genre: str
    traits: dict

    @property
    def label(self) -> str:
        return f"{self.title} ({self.year})"


@dataclass(frozen=True)
class User:
    id: str
    genre: str
    history: tuple[str, ...]
    avoid: tuple[str, ...]
    relevant: tuple[str, ...]
    split: str
    candidates: tuple[str, ...] = ()
    """Catalog ids listed in the prompt to choose from (empty: the model recalls titles)."""


def _data(name: str) -> Path:
    return Path(str(resources.files("safegrpo.envs.recommender") / "data" / name))


def _rows(path: Path) -> list[dict]:
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: invalid JSON ({e.msg})") from None
    return out


def _norm(title: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", title.lower()).split())


class Catalog:
    def __init__(self, movies: list[Movie], min_ratio: float = 0.85, year_tolerance: int = 1):
        self.movies = {m.id: m for m in movies}
        self.min_ratio, self.year_tolerance = min_ratio, year_tolerance
        self._by_norm: dict[str, list[Movie]] = {}
        for m in movies:
            self._by_norm.setdefault(_norm(m.title), []).append(m)

    @classmethod
    def load(cls, path: str | None = None, **kw) -> Catalog:
        rows = _rows(Path(path) if path else _data("catalog.jsonl"))
        try:
            return cls([Movie(r["id"], r["title"], int(r["year"]), r.get("genre", ""),
                              dict(r.get("traits", {}))) for r in rows], **kw)
        except KeyError as e:
            raise ValueError(f"catalog rows need id, title and year (missing {e})") from None

    def oracle(self, threshold: float = 0.5) -> SafetyOracle:
        return SafetyOracle({k: m.traits for k, m in self.movies.items()}, threshold)

    def match(self, title: str, year: int | None) -> str | None:
        """Best fuzzy title match within the year tolerance -> movie id (None if nothing
        qualifies)."""
        key = _norm(title)
        cands = self._by_norm.get(key) or [
            m for k in difflib.get_close_matches(key, self._by_norm, n=3, cutoff=self.min_ratio)
            for m in self._by_norm[k]]
        if year is not None:
            cands = [m for m in cands if abs(m.year - year) <= self.year_tolerance]
        return cands[0].id if cands else None


_LINE = re.compile(r"^\s*(\d+)[.)]\s*(.+?)\s*(?:\((\d{4})\))?\s*$")


def parse_list(text: str, catalog: Catalog) -> list[str | None]:
    """Numbered lines -> catalog ids in rank order (None: a line that names no catalog movie).
    Lines that are not numbered items are ignored."""
    out: list[str | None] = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        out.append(catalog.match(m.group(2), int(m.group(3)) if m.group(3) else None))
    return out


@lru_cache(maxsize=2)
def load_users(path: str | None = None) -> tuple[User, ...]:
    rows = _rows(Path(path) if path else _data("users.jsonl"))
    try:
        return tuple(User(r["id"], r.get("genre", ""), tuple(r["history"]),
                          tuple(r.get("avoid", ())), tuple(r["relevant"]), r["split"])
                     for r in rows)
    except KeyError as e:
        raise ValueError(f"user rows need id, history, relevant and split (missing {e})") from None


PROMPT_TEMPLATE = "History: {history}\nRequest: {request}\nTop {k}:\n"


def render_prompt(user: User, catalog: Catalog, k: int, template: str = PROMPT_TEMPLATE) -> str:
    """The user's prompt; with ``user.candidates``, a "Candidates:" line precedes "Top K:"."""
    hist = "; ".join(catalog.movies[i].label for i in user.history)
    request = f"please avoid movies with {user.avoid[0]}" if user.avoid else "anything good"
    text = template.format(history=hist, request=request, k=k)
    if not user.candidates:
        return text
    cands = "; ".join(catalog.movies[i].label for i in user.candidates)
    head, sep, tail = text.rpartition(f"Top {k}:")
    return f"{head}Candidates: {cands}\n{sep}{tail}" if sep else f"{text}Candidates: {cands}\n"


def with_candidates(user: User, catalog: Catalog, n: int) -> User:
    """``user`` with ``n`` candidates outside its history, in an order fixed by the user's id: up
    to n // 2 of its relevant movies, the rest drawn from the other movies, shuffled together (a
    first-stage retriever's list for the LM to rank)."""
    rng = random.Random(f"candidates:{user.id}")
    seen = set(user.history)
    relevant = [i for i in user.relevant if i not in seen]
    picks = rng.sample(relevant, min(n // 2, len(relevant)))
    others = [i for i in catalog.movies if i not in seen and i not in user.relevant]
    picks += rng.sample(others, min(n - len(picks), len(others)))
    rng.shuffle(picks)
    return replace(user, candidates=tuple(picks))


def format_list(ids: list[str], catalog: Catalog) -> str:
    return "\n".join(f"{i + 1}. {catalog.movies[m].label}" for i, m in enumerate(ids))
