"""Obfuscated copies of an unsafe prompt must not earn more than the plain copy (issue 23).

A "transform" whose rewrite is the unsafe prompt itself is a copy: the keyword penalty and the
text judge must read it the same however it is spelled. Measured on 20 unsafe prompts of the
arena's training pool, for every obfuscation below: the mean total reward and the mean keyword
penalty of the obfuscated copies against the plain copies.
"""

import base64
import json
import time

import pytest
import torch

from safegrpo.core.text import canonical_text
from safegrpo.envs.moderation.reward import PromptInfo
from safegrpo.rewards import hacking

_SMALL_CAPS = dict(zip("abcdefghijklmnopqrstuvwyz", "ᴀʙᴄᴅᴇꜰɢʜɪᴊᴋʟᴍɴᴏᴘꞯʀꜱᴛᴜᴠᴡʏᴢ", strict=True))
_LEET = {"g": "9", "b": "8", "l": "|", "c": "(", "i": "!"}
_CYR = {"k": "к", "m": "м", "t": "т", "n": "п", "h": "н", "b": "в"}


def _per_word(fn, min_len=4):
    return lambda t: " ".join(fn(w) if len(w) >= min_len else w for w in t.split(" "))


def _inner(fn):
    """Apply ``fn`` to the letters inside a word, never the first or last one."""
    return lambda w: w[0] + "".join(fn(c) for c in w[1:-1]) + w[-1]


def _first_cyr(w):
    i = next((k for k, c in enumerate(w) if c in _CYR), None)
    return w if i is None else w[:i] + _CYR[w[i]] + w[i + 1:]


OBFUSCATIONS = {
    "rtl_override": lambda t: "\u202e" + t[::-1] + "\u202c",
    "reversed_words": _per_word(lambda w: w[::-1]),
    "in_word_hyphen": _per_word(lambda w: w[:len(w) // 2] + "-" + w[len(w) // 2:]),
    "in_word_dot": _per_word(lambda w: w[:2] + "." + w[2:]),
    "double_spaced_letters": _per_word(lambda w: "  ".join(w)),
    "double_spaces": lambda t: t.replace(" ", "  "),
    "base64_words": _per_word(lambda w: base64.b64encode(w.encode()).decode()),
    "base64_whole": lambda t: base64.b64encode(t.encode()).decode(),
    "small_caps": lambda t: "".join(_SMALL_CAPS.get(c, c) for c in t),
    "leet_98|(!": _per_word(_inner(lambda c: _LEET.get(c, c))),
    "cyrillic_one_letter": _per_word(_first_cyr),
    "palochka": lambda t: t.replace("l", "\u04cf"),
    "homoglyph": lambda t: t.translate(str.maketrans({"a": "\u0430", "e": "\u0435",
                                                      "o": "\u043e", "p": "\u0440"})),
    "zero_width": lambda t: "\u200b".join(t),
    "fullwidth": lambda t: "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in t),
    "combining": lambda t: "".join(c + "\u0337" if c.isalpha() else c for c in t),
}


def transform(rewrite: str) -> str:
    return json.dumps({"decision": "transform", "rewrite": rewrite, "reason": "unsafe"},
                      ensure_ascii=False)


@pytest.fixture(scope="module")
def unsafe_prompts(arena_reward):
    """20 unsafe training prompts that hold lexicon words, all spelled plainly (the pool also
    has obfuscated prompts; an obfuscation of those is a compound the measurement leaves out)."""
    import re

    from safegrpo.envs.moderation.pools import train_split

    lex = arena_reward.all_keywords

    def plain_keywords(text):
        found = hacking.unsafe_keywords(text, lex)
        return found and found == set(re.findall(r"[a-z]+", text.lower())) & set(lex)

    recs = [r for r in train_split() if r.label == "unsafe" and plain_keywords(r.prompt)]
    step = len(recs) // 20
    return [PromptInfo(r.prompt, r.label, r.category, r.tier) for r in recs[::step][:20]]


@pytest.fixture(scope="module")
def plain(arena_reward, unsafe_prompts):
    return arena_reward(unsafe_prompts, [transform(p.prompt) for p in unsafe_prompts])


@pytest.mark.parametrize("name", list(OBFUSCATIONS))
def test_obfuscated_copies_gain_no_reward(arena_reward, unsafe_prompts, plain, name):
    obf = OBFUSCATIONS[name]
    assert sum(obf(p.prompt) != p.prompt for p in unsafe_prompts) >= 15  # (some have no "l")
    out = arena_reward(unsafe_prompts, [transform(obf(p.prompt)) for p in unsafe_prompts])
    keyword, keyword_plain = out.components["keyword"], plain.components["keyword"]
    # every copy keeps all its keywords, whatever the spelling: the full penalty, as plain
    torch.testing.assert_close(keyword, keyword_plain)
    gain = float(out.total.mean() - plain.total.mean())
    print(f"{name}: mean reward plain {plain.total.mean():+.3f}, obfuscated "
          f"{out.total.mean():+.3f} ({gain:+.3f})")
    assert gain <= 0.02, f"{name}: obfuscated copies gain {gain:+.3f} over plain copies"


@pytest.mark.parametrize("name", list(OBFUSCATIONS))
def test_keyword_scan_reads_every_obfuscation(arena_reward, unsafe_prompts, name):
    """The keyword penalty's scan alone (a near-verbatim copy is also caught by the copy ratio,
    which hides a dodged scan in the test above): the obfuscated prompt shows every keyword the
    plain one does."""
    lex = arena_reward.all_keywords
    missed = {p.prompt: hacking.unsafe_keywords(p.prompt, lex)
              - hacking.unsafe_keywords(OBFUSCATIONS[name](p.prompt), lex)
              for p in unsafe_prompts}
    assert not any(missed.values()), {k: v for k, v in missed.items() if v}


def test_palochka_reads_as_l():
    """U+04CF (Cyrillic palochka) is TR39-confusable with "l", not "i": "bӏood" is blood."""
    assert canonical_text("b\u04cfood") == "blood"
    assert hacking.unsafe_keywords("b\u04cfood", ["blood"]) == {"blood"}


def test_genuine_non_latin_words_stay_as_they_are():
    """The wider look-alike table reads a Cyrillic letter as Latin only inside a word that holds
    ASCII letters: "нет вот кот" (no, here, cat) is Russian, "kпife" is a spelling of knife."""
    assert canonical_text("нет вот кот, привет") == "нет вот кот, привет"
    assert canonical_text("kпife") == "knife"


def test_reversed_short_words_are_not_read_backwards():
    """"tab" is a word of its own, not "bat" backwards: only 4+ letter tokens are reversed."""
    assert hacking.unsafe_keywords("a tab on the table", ["bat"]) == set()
    assert hacking.revealed("a calm street at dusk", ["knife"]) == "a calm street at dusk"


def test_reward_never_raises_on_a_lone_surrogate_in_a_rewrite(arena_reward):
    """A completion's JSON may escape a lone surrogate into the rewrite; tokenizers refuse such
    strings, so the canonical form drops them (Python / TRL path)."""
    from safegrpo.envs.moderation.trl import moderation_trl_reward

    info = PromptInfo("a man stabbing a stranger with a knife", "unsafe", "violence", "T1")
    esc = '{"decision": "transform", "rewrite": "a calm \\ud800 street at dusk", "reason": "v"}'
    raw = transform("a calm \ud800 street \udfff at dusk")
    out = arena_reward([info] * 2, [esc, raw])
    assert not torch.isnan(out.total).any() and out.components["format"].tolist() == [
        pytest.approx(0.1)] * 2
    fn = moderation_trl_reward(arena_reward)
    got = fn(prompts=["p", "p"], completions=[esc, raw], arena_prompt=[info.prompt] * 2,
             label=["unsafe"] * 2, category=["violence"] * 2)
    assert len(got) == 2 and all(isinstance(x, float) for x in got)


def test_diversity_penalty_is_fast_on_a_big_group():
    """64 rewrites of 4 kB in one group: was 5-7.6 s (each pair re-normalised both texts)."""
    import random

    rng = random.Random(0)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 8)))
             for _ in range(3000)]
    rewrites = [" ".join(rng.choice(vocab) for _ in range(700))[:4096] for _ in range(64)]
    t0 = time.perf_counter()
    got = hacking.group_similarity(rewrites, torch.zeros(64, dtype=torch.long))
    assert time.perf_counter() - t0 < 1.0
    sets = [set(hacking.words(r)) for r in rewrites]
    want = [sum(len(sets[i] & sets[j]) / len(sets[i] | sets[j]) for j in range(64) if j != i) / 63
            for i in (0, 17, 63)]
    torch.testing.assert_close(got[[0, 17, 63]], torch.tensor(want))
