"""Needles and questions, generated from a seed: fictional names, so no needle can be
answered from the model's knowledge or found in the haystack (NeedleBench v2's rule).

* single retrieval: one "hidden item" fact; the question asks for the item;
* multi retrieval: ``k`` such facts about different places; the question asks for all items;
* multi reasoning: a chain of ``k`` fictional kinship facts (A is the parent of B, B of C,
  ...), inserted in a shuffled order; the question asks for the eldest ancestor of the last
  person, which only following the whole chain answers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

KINDS = ("single", "multi", "reasoning")
ONSETS = ["b", "br", "d", "dr", "f", "g", "k", "kr", "l", "m", "n", "p", "qu", "r", "s", "t", "th", "v", "z"]
VOWELS = ["a", "e", "i", "o", "u", "ae", "io", "y"]
CODAS = ["", "", "n", "r", "l", "s", "x", "th", "m"]
PLACES = ["Island", "Valley", "Harbor", "Plateau", "Marsh", "Citadel"]
ITEMS = ["Shard", "Lantern", "Compass", "Chalice", "Amulet", "Scroll", "Crown", "Mirror"]


@dataclass(frozen=True)
class NeedleSet:
    kind: str
    facts: tuple[str, ...]  # sentences, in the order they are inserted
    question: str
    answers: tuple[str, ...]  # strings the output must contain
    names: tuple[str, ...] = ()  # reasoning: every person of the chain, eldest first
    # the start of the answer, as RULER does: small models complete a sentence far more
    # often than they answer a bare "Answer:"
    answer_prefix: str = ""


def invented_word(rng: random.Random, avoid: str, used: set[str]) -> str:
    """A pronounceable invented word (capitalised) that occurs nowhere in ``avoid``."""
    while True:
        word = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(3))
        word = word[:1].upper() + word[1:]
        if word.lower() not in avoid and word not in used and 6 <= len(word) <= 11:
            used.add(word)
            return word


def needle_set(kind: str, seed: int, sample: int, k: int, avoid: str) -> NeedleSet:
    """The needles of one sample (the same at every length and depth: cells differ only in
    where the needles sit and how much haystack surrounds them)."""
    if kind not in KINDS:
        raise ValueError(f"unknown long-context task kind {kind!r}; one of {', '.join(KINDS)}")
    rng = random.Random(f"needles:{seed}:{kind}:{sample}")
    used: set[str] = set()
    if kind in ("single", "multi"):
        n = 1 if kind == "single" else k
        places = [f"{invented_word(rng, avoid, used)} {rng.choice(PLACES)}" for _ in range(n)]
        items = [f"{invented_word(rng, avoid, used)} {rng.choice(ITEMS)}" for _ in range(n)]
        facts = tuple(f"Hidden on {p} is the legendary {i}." for p, i in zip(places, items))
        listed = places[0] if n == 1 else f"{', '.join(places[:-1])} and {places[-1]}"
        if n == 1:
            question = f"What legendary item is hidden on {listed}?"
            prefix = f"The legendary item hidden on {listed} is the"
        else:
            question = f"What legendary items are hidden on {listed}?"
            prefix = f"The legendary items hidden on {listed} are the"
        return NeedleSet(kind, facts, question, tuple(items), answer_prefix=prefix)
    names = [invented_word(rng, avoid, used) for _ in range(k + 1)]
    facts = [f"{names[i]} is the {rng.choice(['father', 'mother'])} of {names[i + 1]}." for i in range(k)]
    rng.shuffle(facts)
    question = f"Following the family relations in the document, who is the eldest ancestor of {names[-1]}?"
    prefix = f"The eldest ancestor of {names[-1]} is"
    return NeedleSet(kind, tuple(facts), question, (names[0],), tuple(names), prefix)
