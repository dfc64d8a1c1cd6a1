"""Canonical form of untrusted text, read before keyword checks and text judges.

A policy (or a red-team attacker) can hide a word from a lexicon or a judge with characters a
human reads past: Cyrillic/Greek look-alikes ("kіll" with a Cyrillic i), small capitals
("ᴋɴɪꜰᴇ"), zero-width or other invisible format characters between letters, fullwidth or
mathematical letters ("ｋｉｌｌ"), combining marks ("k̷i̷l̷l̷") and a right-to-left override that
shows stored "efink" as "knife". ``canonical_text`` undoes them:

1. a right-to-left override (U+202E) up to its pop (U+202C, U+2069) or the end of the line is
   read as displayed: the characters in between are reversed;
2. NFKD: compatibility forms (fullwidth, mathematical alphanumerics, ligatures) become their
   plain letters and accented letters split into base + combining mark;
3. combining marks (Mn, Me), lone surrogates (Cs: no text, and tokenizers refuse them) and
   invisible characters (Cf format characters such as U+200B..D, U+2060, U+FEFF, soft hyphen,
   bidi controls, tag characters, plus the fillers Unicode files as letters or symbols) are
   removed;
4. Latin letter forms that are not decomposed by NFKD (small capitals "ᴋ", letters with a
   stroke "ɨ", dotless "ı"; from the Unicode character names) become their letter;
5. words whose every non-ASCII letter has a Latin look-alike in the Unicode confusables table
   (``confusable-homoglyphs``, TR39 data, with its U+04CF palochka fixed to "l") are spelled in
   Latin. A word that also holds ASCII letters or digits is mixed-script, never a genuine
   non-Latin word, and is spelled in Latin with a wider table too: Cyrillic and Greek letters
   that TR39 files as look-alikes of Latin *small capitals* (к м т п н в ...), not of letters.
   A word without ASCII letters that holds any letter without a strict look-alike (most genuine
   Cyrillic or Greek words: "привет") is kept, so real non-Latin text is not turned into Latin
   gibberish;
6. NFC.

The function is pure, idempotent and keeps case; it does not lowercase or undo leetspeak,
reversed words, separators inside words or base64 (the keyword checks in
``safegrpo.rewards.hacking`` do that on top).
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

# invisible characters that Unicode does not file as format (Cf) characters
_INVISIBLE_EXTRA = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e")
# letters, digits and stars: "н473ful" and "п**e" are one (leet, starred) word each
_WORD = re.compile(r"(?:[^\W_]|\*)+", re.UNICODE)
# right-to-left override .. pop directional formatting / pop isolate / end of line
_RLO = re.compile(r"\u202e([^\u202c\u2069\n]*)")
_TR39_FIXES = {"\u04cf": "l"}  # Cyrillic palochka: TR39 maps it to "l"; the package data says "i"
# Cyrillic / Greek letters TR39 lists as look-alikes of Latin small capitals (or of nothing in
# Latin), read as Latin only inside a word that also holds ASCII letters
_MIXED_ONLY = {"к": "k", "м": "m", "т": "t", "п": "n", "н": "h", "в": "b", "г": "r", "и": "u",
               "ь": "b", "ш": "w", "л": "n", "я": "r", "κ": "k", "ν": "v", "τ": "t", "η": "n",
               "μ": "u", "ι": "i", "ρ": "p", "ω": "w", "χ": "x", "γ": "y"}
_LATIN_FORM = re.compile(r"LATIN (?:LETTER SMALL CAPITAL|(?:SMALL|CAPITAL) LETTER(?: DOTLESS)?)"
                         r" ([A-Z])(?: WITH .+)?")


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
    return {**out, **_TR39_FIXES}


@cache
def latin_letter_forms() -> dict[str, str]:
    """Latin-script letter forms NFKD leaves alone -> their ASCII letter, from the character
    names: small capitals (U+1D0B "ᴋ" -> k), letters with a stroke, hook or bar, dotless i."""
    out = {}
    for cp in range(0x80, 0x20000):
        ch = chr(cp)
        m = _LATIN_FORM.fullmatch(unicodedata.name(ch, ""))
        if m and unicodedata.category(ch) in ("Ll", "Lu"):
            letter = m.group(1)
            out[ch] = letter if "CAPITAL LETTER" in m.group(0) else letter.lower()
    return out


@cache
def _mixed_lookalikes() -> dict[str, str]:
    return {**_MIXED_ONLY, **latin_lookalikes()}


def _drop(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat in ("Mn", "Me", "Cf", "Cs") or ch in _INVISIBLE_EXTRA


def _latinise(m: re.Match[str]) -> str:
    word = m.group(0)
    if word.isascii():
        return word
    forms = latin_letter_forms()
    word = "".join(forms.get(c, c) for c in word)
    table = latin_lookalikes()
    if any(c.isascii() for c in word):
        table = _mixed_lookalikes()  # a mixed-script word is no genuine non-Latin word
    if all(c.isascii() or c in table for c in word):
        return "".join(c if c.isascii() else table[c] for c in word)
    return word


def canonical_text(text: str) -> str:
    """``text`` with right-to-left overrides, compatibility forms, invisible characters,
    combining marks and Latin look-alikes undone (see the module docstring).
    ``canonical_text(canonical_text(t)) == canonical_text(t)``."""
    if text.isascii():
        return text  # fast path: nothing to undo
    t = _RLO.sub(lambda m: m.group(1)[::-1], text)
    t = "".join(c for c in unicodedata.normalize("NFKD", t) if not _drop(c))
    t = _WORD.sub(_latinise, t)
    return unicodedata.normalize("NFC", t)
