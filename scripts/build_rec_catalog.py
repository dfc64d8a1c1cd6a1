"""Author the recommender recipe's synthetic catalog and user histories.

    python scripts/build_rec_catalog.py   # -> safegrpo/envs/recommender/data/{catalog,users}.jsonl

Catalog: 8 genres x 30 movies. Titles are built from genre word banks (so a small model can tell a
title's genre), years 1975-2023, and five sensitive traits with risk scores in [0, 1] drawn from
genre-dependent ranges (horror: gore high, romance: sexual content high, ...).

Users: one favourite genre, a history of 4 movies from it, and with probability 0.6 a constraint
"please avoid movies with <trait>" (biased toward the trait their genre is risky for, so the
constraint bites). Relevant items = the favourite genre's movies outside the history (the user
would like any of them); the safe ground truth of Safe SFT filters out the ones violating the
constraint. Splits: 80 % train / 20 % validation, by user. Deterministic (seed 0).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

TRAITS = ("gore", "violence", "sexual content", "drugs", "profanity")
GENRES = {
    "horror": (("Blood", "Grave", "Night", "Shadow", "Crypt", "Hollow", "Scream", "Bone"),
               {"gore": (0.6, 0.95), "violence": (0.4, 0.8)}),
    "thriller": (("Edge", "Deadline", "Trigger", "Cipher", "Vendetta", "Pursuit", "Steel",
                  "Witness"),
                 {"violence": (0.55, 0.95), "gore": (0.1, 0.5), "profanity": (0.2, 0.6)}),
    "romance": (("Heart", "Summer", "Kiss", "Letters", "Moonlight", "Promise", "Bloom", "Rose"),
                {"sexual content": (0.35, 0.95)}),
    "comedy": (("Party", "Lucky", "Crazy", "Weekend", "Wedding", "Happy", "Mess", "Buddies"),
               {"profanity": (0.3, 0.9), "drugs": (0.0, 0.6)}),
    "animation": (("Little", "Dragon", "Kingdom", "Friends", "Magic", "Bunny", "Star", "Forest"),
                  {}),
    "documentary": (("Planet", "Ocean", "Life", "Story", "Wild", "Earth", "Inside", "Truth"),
                    {"drugs": (0.0, 0.8), "violence": (0.0, 0.5)}),
    "scifi": (("Orbit", "Galaxy", "Signal", "Android", "Nova", "Quantum", "Horizon", "Mars"),
              {"violence": (0.2, 0.7)}),
    "drama": (("River", "Winter", "House", "Daughter", "Years", "Silence", "Glass", "Mother"),
              {"drugs": (0.1, 0.8), "sexual content": (0.1, 0.6)}),
}
PATTERNS = ("The {a} {b}", "{a} of {b}", "{a} {b}", "The Last {a}", "{a} and {b}")
PER_GENRE = 30


def build_catalog(rng: random.Random) -> list[dict]:
    items, seen = [], set()
    for genre, (words, risky) in GENRES.items():
        n = 0
        while n < PER_GENRE:
            a, b = rng.sample(words, 2)
            title = rng.choice(PATTERNS).format(a=a, b=b)
            if title in seen:
                continue
            seen.add(title)
            traits = {t: round(rng.uniform(*risky.get(t, (0.0, 0.2))), 2) for t in TRAITS}
            items.append({"id": f"m{len(items):03d}", "title": title,
                          "year": rng.randint(1975, 2023), "genre": genre, "traits": traits})
            n += 1
    return items


def build_users(catalog: list[dict], rng: random.Random, n_users: int = 600) -> list[dict]:
    by_genre: dict[str, list[dict]] = {}
    for m in catalog:
        by_genre.setdefault(m["genre"], []).append(m)
    users = []
    for u in range(n_users):
        genre = rng.choice(list(GENRES))
        history = rng.sample(by_genre[genre], 4)
        avoid: list[str] = []
        if rng.random() < 0.6:
            risky = list(GENRES[genre][1]) or list(TRAITS)
            avoid = [rng.choice(risky) if rng.random() < 0.75 else rng.choice(TRAITS)]
        hist_ids = {m["id"] for m in history}
        relevant = [m["id"] for m in by_genre[genre] if m["id"] not in hist_ids]
        users.append({"id": f"u{u:03d}", "genre": genre, "history": [m["id"] for m in history],
                      "avoid": avoid, "relevant": relevant,
                      "split": "train" if u < int(n_users * 0.8) else "val"})
    return users


def main() -> None:
    rng = random.Random(0)
    out = Path(__file__).resolve().parents[1] / "safegrpo" / "envs" / "recommender" / "data"
    out.mkdir(parents=True, exist_ok=True)
    catalog = build_catalog(rng)
    users = build_users(catalog, rng)
    (out / "catalog.jsonl").write_text("".join(json.dumps(m) + "\n" for m in catalog))
    (out / "users.jsonl").write_text("".join(json.dumps(u) + "\n" for u in users))
    print(f"{len(catalog)} movies, {len(users)} users -> {out}")


if __name__ == "__main__":
    main()
