"""Canonical form of untrusted text, read before keyword checks and text judges.

A policy (or a red-team attacker) can hide a word from a lexicon or a judge with characters a
human reads past: Cyrillic/Greek look-alikes ("kіll" with a Cyrillic i), zero-width or other
invisible format characters between letters, fullwidth or mathematical letters ("ｋｉｌｌ"),
and combining marks ("k̷i̷l̷l̷"). ``canonical_text`` undoes all four:

1. NFKD: compatibility forms (fullwidth, mathematical alphanumerics, ligatures) become their
   plain letters and accented letters split into base + combining mark;
2. combining marks (Mn, Me) and invisible characters (Cf format characters such as U+200B..D,
   U+2060, U+FEFF, soft hyphen, bidi controls, tag characters, plus the fillers Unicode files
   as letters or symbols) are removed;
3. words whose every non-ASCII letter has a Latin look-alike in the Unicode confusables table
   (``confusable-homoglyphs``, TR39 data) are spelled in Latin. A word that holds any letter
   without a Latin look-alike (most genuine Cyrillic or Greek words: "привет") is kept, so
   real non-Latin text is not turned into Latin gibberish;
4. NFC.

The function is pure, idempotent and keeps case; it does not lowercase or undo leetspeak (the
keyword checks in ``safegrpo.rewards.hacking`` do that on top).
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

# invisible characters that Unicode does not file as format (Cf) characters
_INVISIBLE_EXTRA = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e")
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


@cache
def latin_lookalikes() -> dict[str, str]:
    """Non-ASCII character -> the ASCII letter or digit it is confusable with (TR39 data)."""
    from confusable_homoglyphs.confusables import confusables_data

    out: dict[str, str] = {}
    for ch, glyphs in confusables_data.items():
        if len(ch) != 1 or ch.isascii():
            continue
        targets = [g["c"] for g in glyphs
                   if len(g["c"]) == 1 and g["c"].isascii() and g["c"].isalnum()]
        letters = [t for t in targets if t.isalpha()]
        if letters or targets:
            out[ch] = (letters or targets)[0]
    return out


def _drop(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat in ("Mn", "Me", "Cf") or ch in _INVISIBLE_EXTRA


def _latinise(m: re.Match[str]) -> str:
    word = m.group(0)
    if word.isascii():
        return word
    table = latin_lookalikes()
    if all(c.isascii() or c in table for c in word):
        return "".join(c if c.isascii() else table[c] for c in word)
    return word


def canonical_text(text: str) -> str:
    """``text`` with compatibility forms, invisible characters, combining marks and Latin
    look-alikes undone (see the module docstring). ``canonical_text(canonical_text(t)) ==
    canonical_text(t)``."""
    if text.isascii():
        return text  # fast path: nothing to undo
    t = "".join(c for c in unicodedata.normalize("NFKD", text) if not _drop(c))
    t = _WORD.sub(_latinise, t)
    return unicodedata.normalize("NFC", t)
