"""The haystack: real prose from the offline mirror, in one seeded order for every model.

BoolQ's Wikipedia passages (``aps/super_glue``, ``boolq``, validation), read through the
suite's one loader (``slm_tasks.data.load``: the mirror, sha256-checked, or the hub), their
titles dropped, de-duplicated and shuffled by the seed. Every cell of every task reads a
prefix of the same text, so cells share their haystack prefix (the engines' prefix caches
reuse it) and every model sees the same words.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache

HUB_ID, HUB_CONFIG, SPLIT = "aps/super_glue", "boolq", "validation"
# a sentence starts after ., ! or ? and white space, at a capital letter, digit or quote
SENTENCE_START = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


@dataclass(frozen=True)
class Haystack:
    text: str  # the passages joined, one paragraph each
    sentence_starts: tuple[int, ...]  # character offsets where a sentence begins (0 first)
    corpus_lower: str  # every passage, lower-cased: what a needle's answer must not occur in


def _passages(source: tuple[str, str, str], slm_data_dir: str | None) -> list[str]:
    from slm_tasks.data import load

    hub_id, config, split = source
    dsd = load(hub_id, config, eval_split=split, slm_data_dir=slm_data_dir, task="long-context haystack")
    seen, out = set(), []
    for passage in dsd[split]["passage"]:
        # "Title -- text": the title repeats the topic; keep the prose
        text = passage.split(" -- ", 1)[-1].strip()
        if text and text not in seen:
            seen.add(text)
            out.append(text)
    return sorted(out)


@lru_cache(maxsize=4)
def haystack(
    seed: int, slm_data_dir: str | None = None, source: tuple[str, str, str] = (HUB_ID, HUB_CONFIG, SPLIT)
) -> Haystack:
    passages = _passages(source, slm_data_dir)
    random.Random(f"haystack:{seed}").shuffle(passages)
    text = "\n".join(passages)
    starts = [0]
    for m in SENTENCE_START.finditer(text):
        starts.append(m.end())
    for m in re.finditer("\n", text):
        starts.append(m.end())
    return Haystack(text, tuple(sorted(set(starts))), text.lower())
