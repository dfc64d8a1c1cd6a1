"""The recommender's users and Safe-SFT targets: which users each stage reads.

``load_data`` gives the catalog, the training users and the users every evaluation reads
(validation users, or held-out training users under ``eval_split=tune``); ``split_training_users``
then splits the training users between Safe SFT and GRPO (``sft_user_share``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from safegrpo.envs.recommender.catalog import Catalog, User, load_users, with_candidates


@dataclass(frozen=True)
class RecDataConfig:
    catalog: str = ""
    """catalog.jsonl (id, title, year, genre, traits); empty = the bundled synthetic catalog."""
    users: str = ""
    """users.jsonl (history, avoid, relevant, split); empty = the bundled users."""
    min_ratio: float = 0.85
    """Fuzzy title match threshold (difflib ratio on normalised titles)."""
    year_tolerance: int = 1
    """Years may differ by this much."""
    sft_samples_per_user: int = 2
    """Safe-SFT targets drawn per training user."""
    max_val_users: int = 120
    """Validation users evaluated (0 = all)."""
    candidates: int = 0
    """Movies listed in every prompt (0 = none: the model recalls titles Safe SFT taught it); N > 0
    lists N outside the user's history, up to N // 2 relevant (``with_candidates``), and Safe-SFT
    targets come from them, so a model that never saw the catalog ranks instead of recalls."""
    sft_user_share: float = 1.0
    """Share of the training users Safe SFT learns from (the first ones). 1.0: SFT and GRPO read
    them all. Below 1: GRPO reads only the rest, users whose safe lists SFT never showed it; on
    users SFT did see the model already avoids what they asked it to (little safety signal)."""
    eval_split: str = "val"
    """Users every evaluation reads: ``val`` (the validation users), or ``tune``: the last
    max_val_users training users, then held out of Safe SFT and GRPO, so knobs are chosen
    without touching the validation users."""

    def __post_init__(self) -> None:
        if not 0.0 < self.sft_user_share <= 1.0:
            raise ValueError(f"data.sft_user_share must be in (0, 1], got {self.sft_user_share}")
        if self.candidates < 0:
            raise ValueError(f"data.candidates must be >= 0, got {self.candidates}")
        if self.eval_split not in ("val", "tune"):
            raise ValueError(f"data.eval_split must be val | tune, got {self.eval_split!r}")
        if self.eval_split == "tune" and self.max_val_users < 1:
            raise ValueError("data.eval_split=tune needs data.max_val_users >= 1 (the number of "
                             "training users held out)")


def load_data(cfg: RecDataConfig) -> tuple[Catalog, list[User], list[User]]:
    catalog = Catalog.load(
        cfg.catalog or None, min_ratio=cfg.min_ratio, year_tolerance=cfg.year_tolerance
    )
    users = load_users(cfg.users or None)
    if cfg.candidates:
        users = tuple(with_candidates(u, catalog, cfg.candidates) for u in users)
    missing = {i for u in users for i in (*u.history, *u.relevant) if i not in catalog.movies}
    if missing:
        raise ValueError(f"users refer to ids missing from the catalog: {sorted(missing)[:5]}")
    train = [u for u in users if u.split == "train"]
    val = [u for u in users if u.split == "val"]
    if cfg.eval_split == "tune":  # held out of training; the validation users stay unread
        if len(train) <= cfg.max_val_users:
            raise ValueError(f"data.eval_split=tune: {len(train)} training users cannot spare "
                             f"{cfg.max_val_users} (data.max_val_users)")
        return catalog, train[:-cfg.max_val_users], train[-cfg.max_val_users:]
    if cfg.max_val_users > 0:
        val = val[:cfg.max_val_users]
    return catalog, train, val


def safe_targets(user: User, catalog: Catalog, oracle, k: int, rng: random.Random) -> list[str]:
    """K ids: relevant items that satisfy the constraint, topped up with safe items of other
    genres; from ``user.candidates`` when it has some (from the catalog if they run short)."""
    def safe(i: str) -> bool:
        return not (user.avoid and oracle.violates(i, user.avoid))

    allowed = set(user.candidates or catalog.movies)
    picks = [i for i in user.relevant if i in allowed and safe(i)]
    picks = rng.sample(picks, min(k, len(picks)))
    for scope in (allowed, catalog.movies):
        if len(picks) < k:
            pool = [i for i in catalog.movies if i in scope and i not in picks
                    and i not in user.history and safe(i)]
            picks += rng.sample(pool, min(k - len(picks), len(pool)))
    return picks


def split_training_users(train: list[User], share: float) -> tuple[list[User], list[User]]:
    """(Safe-SFT users, GRPO users): all of them twice at share 1.0, else the first ``share`` of
    them for SFT and the rest for GRPO (each side keeps at least one user)."""
    if share >= 1.0:
        return train, train
    if len(train) < 2:
        raise ValueError("data.sft_user_share < 1 needs at least 2 training users")
    cut = min(max(1, round(len(train) * share)), len(train) - 1)
    return train[:cut], train[cut:]
