"""Cells (task x length x depth) built to their length in the model's own tokens.

A prompt is ``HEAD`` + haystack with the needles inserted + the question. The haystack is a
prefix of the one shared text, cut at a word boundary where the prompt reaches the cell's
length; each needle goes in at the sentence start nearest to its depth (a fraction of the
haystack's tokens). The real token count, the needles' token positions and the haystack's
span are recorded in the document, so the samples show where everything sat.
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field

from slm_tasks.long_context.haystack import Haystack
from slm_tasks.long_context.needles import NeedleSet
from slm_tasks.long_context.tokenizers import LongContextError, Tokenizer, Window

HEAD = (
    "Read the document below carefully. It contains the facts needed to answer the question "
    "that follows it.\n\nDocument:\n"
)
TAIL = "\n\nAnswer the question using only the document above.\nQuestion: {question}\nAnswer: {prefix}"
TOLERANCE = 0.02  # the prompt is within 2% of the cell's length
NOT_APPLICABLE_PROMPT = "This cell is not applicable to this model."


@dataclass
class Cell:
    kind: str
    length: int  # nominal, in the model's tokens
    depth: float  # percent of the haystack where the (first) needle sits
    sample: int
    prompt: str
    answers: list[str]
    names: list[str]
    applicable: bool = True
    reason: str = ""
    n_tokens: int = 0  # the prompt's real token count
    needle_positions: list[int] = field(default_factory=list)  # token index of each needle's start
    haystack_start: int = 0  # token index where the haystack starts
    haystack_tokens: int = 0  # tokens between the haystack's start and the question
    tokenizer: str = ""

    def doc(self) -> dict:
        d = asdict(self)
        d["target"] = ", ".join(self.answers)
        d["cell"] = f"{self.length}@{self.depth:g}"
        return d


def tail(needles: NeedleSet) -> str:
    return TAIL.format(question=needles.question, prefix=needles.answer_prefix)


def needle_depths(depth: float, k: int) -> list[float]:
    """The first needle at ``depth``, the others evenly spaced after it (NeedleBench)."""
    return [depth + i * (100.0 - depth) / k for i in range(k)]


def not_applicable(length: int, max_gen_toks: int, window: Window) -> str:
    """Why a cell cannot run on this model, or "" when it can."""
    need = length + max_gen_toks
    if window.trained is not None and need > window.trained:
        return (
            f"{length} prompt tokens + {max_gen_toks} generated exceed the model's trained "
            f"context ({window.trained} tokens)"
        )
    if window.window is not None and need > window.window:
        how = f"{window.window_arg}={window.window}" if window.window_arg else f"{window.window} tokens"
        return f"{length} prompt tokens + {max_gen_toks} generated exceed the backend's window ({how})"
    return ""


class Builder:
    """Builds cells for one tokenizer over one haystack (token offsets computed once)."""

    def __init__(self, tok: Tokenizer, hay: Haystack, longest: int) -> None:
        self.tok, self.hay = tok, hay
        # tokenise a prefix long enough for the longest cell (about 4 characters a token)
        end = min(len(hay.text), max(4096, longest * 8))
        self.text = hay.text[:end]
        self.offsets = tok.offsets(self.text)
        if len(self.offsets) < longest:
            raise LongContextError(
                f"the long-context haystack holds {len(self.offsets)} tokens of this model, fewer than the "
                f"{longest} a cell asks for: choose shorter lc_lengths"
            )
        self.starts = [s for s in hay.sentence_starts if s < end]

    def _cut(self, budget: int) -> int:
        """Character end of a haystack prefix of about ``budget`` tokens, at a word boundary."""
        budget = max(0, min(budget, len(self.offsets) - 1))
        end = self.offsets[budget]
        space = self.text.rfind(" ", 0, end + 1)
        return space if space > 0 else end

    def _insertion(self, depth: float, cut: int, n_tokens: int) -> int:
        """Character offset of the sentence start nearest ``depth`` percent of the haystack."""
        if depth >= 100:
            return cut
        target = self.offsets[min(int(round(depth / 100 * n_tokens)), len(self.offsets) - 1)]
        i = bisect.bisect_left(self.starts, target)
        options = [s for s in self.starts[max(0, i - 1) : i + 1] if s <= cut] + [cut]
        return min(options, key=lambda s: abs(s - target))

    def _assemble(self, needles: NeedleSet, depths: list[float], cut: int) -> tuple[str, list[int], int, int]:
        n_hay = bisect.bisect_left(self.offsets, cut)
        points = [self._insertion(d, cut, n_hay) for d in depths]
        body, prev, marks = "", 0, []
        for point, fact in sorted(zip(points, needles.facts), key=lambda pf: pf[0]):
            body += self.text[prev:point]
            if body and not body.endswith((" ", "\n")):
                body += " "
            marks.append(len(HEAD) + len(body))
            body += fact + " "
            prev = point
        body = (body + self.text[prev:cut]).rstrip()
        return HEAD + body + tail(needles), marks, len(HEAD), len(HEAD) + len(body)

    def build(self, needles: NeedleSet, length: int, depth: float, sample: int) -> Cell:
        depths = needle_depths(depth, len(needles.facts))
        budget = length - self.tok.count(HEAD + tail(needles))
        budget -= sum(self.tok.count(" " + f) for f in needles.facts)
        for _ in range(4):  # the parts' counts are nearly additive: correct the rest
            prompt, marks, hay_start, hay_end = self._assemble(needles, depths, self._cut(budget))
            n = self.tok.count(prompt)
            if abs(n - length) <= max(2, length * TOLERANCE / 4):
                break
            budget += length - n
        if abs(n - length) > TOLERANCE * length:  # never a cell off its nominal length
            raise LongContextError(
                f"a {length}-token long-context cell came out at {n} tokens of {self.tok.name}; "
                f"report this with the model's name"
            )
        return Cell(
            kind=needles.kind,
            length=length,
            depth=depth,
            sample=sample,
            prompt=prompt,
            answers=list(needles.answers),
            names=list(needles.names),
            n_tokens=n,
            needle_positions=[self.tok.count(prompt[:m]) for m in marks],
            haystack_start=self.tok.count(prompt[:hay_start]),
            haystack_tokens=self.tok.count(prompt[:hay_end]) - self.tok.count(prompt[:hay_start]),
            tokenizer=self.tok.name,
        )
