"""One progress bar for a whole run, across lm-eval's request phases.

lm-eval hands a model its requests one type at a time (all loglikelihood requests, then all
generations), so a bar per call cannot say how long the run will take. ``slm-suite run``
counts every phase's requests before the first one starts (:class:`RunPlan`) and makes the
plan current for the run (:func:`planned`); the backends then report into one bar whose
remaining time adds up every phase: the phase running now at its measured rate, phases
already timed at theirs, and a phase not yet timed is named as such (the time shown is then
a lower bound), never guessed.

Generation requests differ too much for a rate per request (a 1,000-token gsm8k prompt that
stops after 50 tokens next to a short HumanEval prompt allowed 1,024), so a backend that
hands the phase its plan (prompt tokens to evaluate and the token limit of each request, in
order) gets a token model: time = prompt tokens x the run's measured seconds per prompt
token + generated tokens x the measured seconds per generated token, the tokens still to
come estimated from each task's outputs so far.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from tqdm import tqdm

_CURRENT: contextvars.ContextVar[RunProgress | None] = contextvars.ContextVar("slm_run_progress", default=None)
PHASE_NAMES = {"loglikelihood": "scoring", "loglikelihood_rolling": "scoring (rolling)", "generate_until": "generation"}


@dataclass(frozen=True)
class Job:
    """One planned generation request: its task, the prompt tokens the engine will evaluate
    for it (after any prefix it keeps) and its token limit."""

    task: str | None
    prompt_tokens: int
    max_new: int


@dataclass
class _Phase:
    total: int
    done: int = 0
    seconds: float = 0.0  # time spent on the ``done`` requests
    prompt_tokens: int = 0  # evaluated for the ``done`` requests, when the backend says
    out_tokens: int = 0
    plan: list[Job] = field(default_factory=list)  # the call's requests, in order
    at: int = 0  # plan[at:] are not done yet
    out_by_task: dict = field(default_factory=dict)  # task -> (requests done, their output tokens)

    def rate(self) -> float | None:
        """Seconds per request, once a few have been timed."""
        return self.seconds / self.done if self.done >= min(3, self.total) and self.seconds > 0 else None

    def left_by_tokens(self, s_per_prompt_token: float | None) -> float | None:
        """Seconds left by the token model, or None without a plan and a few timed requests."""
        if self.at >= len(self.plan) or self.done < 3 or self.out_tokens == 0 or s_per_prompt_token is None:
            return None
        p = s_per_prompt_token
        d = max(self.seconds - p * self.prompt_tokens, 0.0) / self.out_tokens
        mean_out = self.out_tokens / self.done  # a task not yet seen: like the requests so far
        left = 0.0
        for job in itertools.islice(self.plan, self.at, None):
            n, tokens = self.out_by_task.get(job.task, (0, 0))
            expect = tokens / n if n >= 3 else mean_out
            left += p * job.prompt_tokens + d * min(expect, job.max_new)
        return left


@dataclass
class RunProgress:
    """Requests per phase of a run, and one bar over all of them."""

    totals: Mapping[str, int]
    disable: bool = False
    phases: dict[str, _Phase] = field(init=False)
    # requests of later calls already in the totals (the later formats of a quantisation
    # sweep, one run each): a call's own count does not shrink them; ``release`` hands them over
    reserved: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        self._shown = 0.0
        self.phases = {k: _Phase(int(n)) for k, n in self.totals.items() if n}
        self._bar = tqdm(
            total=sum(p.total for p in self.phases.values()),
            disable=self.disable,
            file=sys.stderr,
            desc="slm-suite",
            unit="req",
            dynamic_ncols=True,
            bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
        )

    def s_per_prompt_token(self) -> float | None:
        """The run's measured seconds per evaluated prompt token, from its scoring phases."""
        timed = [p for k, p in self.phases.items() if k != "generate_until" and p.prompt_tokens]
        tokens = sum(p.prompt_tokens for p in timed)
        return sum(p.seconds for p in timed) / tokens if tokens >= 1000 else None

    def eta(self) -> tuple[float, list[str]]:
        """(seconds left for the timed phases, names of phases left that are not yet timed)."""
        left, untimed = 0.0, []
        for kind, p in self.phases.items():
            if p.done >= p.total:
                continue
            by_tokens = p.left_by_tokens(self.s_per_prompt_token())
            rate = p.rate()
            if by_tokens is not None:
                left += by_tokens
            elif rate is None:
                untimed.append(PHASE_NAMES.get(kind, kind))
            else:
                left += rate * (p.total - p.done)
        return left, untimed

    def _postfix(self, kind: str) -> str:
        left, untimed = self.eta()
        name = PHASE_NAMES.get(kind, kind)
        if left == 0 and untimed:
            return f"{name}, timing the rate"
        m, s = divmod(int(left), 60)
        h, m = divmod(m, 60)
        clock = f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
        if untimed:  # a phase without a measured rate adds an unknown time: say so
            return f"{name}, left ≥ {clock} + {', '.join(untimed)} (not yet timed)"
        return f"{name}, left {clock}"

    @contextlib.contextmanager
    def phase(self, kind: str, n: int, plan: list[Job] | None = None) -> Iterator[_PhaseBar]:
        """The bar for ``n`` requests of ``kind`` (a call may carry fewer than planned, e.g.
        when the response store answers some: the plan shrinks to what is computed).
        ``plan``: the ``n`` requests as :class:`Job`, in the order they will be done."""
        p = self.phases.setdefault(kind, _Phase(0))
        grow = n - (p.total - p.done - self.reserved.get(kind, 0))
        if grow:
            p.total += grow
            self._bar.total += grow
        if plan is not None and len(plan) == n:
            p.plan, p.at = list(plan), 0
        handle = _PhaseBar(self, kind)
        self._bar.set_postfix_str(self._postfix(kind), refresh=True)
        yield handle

    def release(self, counts: Mapping[str, int]) -> None:
        """The next call's share of ``reserved`` (requests per kind) is now its own."""
        for kind, n in counts.items():
            self.reserved[kind] = max(0, self.reserved.get(kind, 0) - int(n))

    def skip(self, kind: str, n: int) -> None:
        """``n`` planned requests of ``kind`` need no computing (answered from the store)."""
        p = self.phases.get(kind)
        if p is None or n <= 0:
            return
        n = min(n, p.total - p.done - self.reserved.get(kind, 0))
        if n <= 0:
            return
        p.total -= n
        self._bar.total -= n
        self._bar.refresh()

    def _advance(self, kind: str, n: int, seconds: float, prompt_tokens: int = 0, out_tokens: int = 0) -> None:
        p = self.phases[kind]
        p.done += n
        p.seconds += seconds
        p.prompt_tokens += prompt_tokens
        p.out_tokens += out_tokens
        if p.at < len(p.plan):
            jobs = p.plan[p.at : p.at + n]
            p.at += n
            for j in jobs:  # a unit's tokens are shared evenly among its requests
                count, tokens = p.out_by_task.get(j.task, (0, 0))
                p.out_by_task[j.task] = (count + 1, tokens + out_tokens / len(jobs))
        now = time.monotonic()
        if now - self._shown >= 0.5 or p.done >= p.total:  # the estimate walks the plan: not per request
            self._shown = now
            self._bar.set_postfix_str(self._postfix(kind), refresh=False)
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


class _PhaseBar:
    """What a backend holds while it answers one call: ``update(n)`` like a tqdm bar, plus the
    tokens those ``n`` requests evaluated and generated."""

    def __init__(self, run: RunProgress, kind: str):
        self.run, self.kind = run, kind
        self._last = time.perf_counter()

    def update(self, n: int, prompt_tokens: int = 0, out_tokens: int = 0) -> None:
        now = time.perf_counter()
        self.run._advance(self.kind, n, now - self._last, prompt_tokens, out_tokens)
        self._last = now


class CallBar:
    """A tqdm bar for one call outside ``slm-suite run``, with :class:`_PhaseBar`'s ``update``."""

    def __init__(self, total: int, disable: bool, desc: str):
        self._bar = tqdm(total=total, disable=disable, desc=desc)

    def __enter__(self) -> CallBar:
        return self

    def __exit__(self, *exc) -> None:
        self._bar.close()

    def update(self, n: int, prompt_tokens: int = 0, out_tokens: int = 0) -> None:
        self._bar.update(n)


def current() -> RunProgress | None:
    return _CURRENT.get()


@contextlib.contextmanager
def planned(totals: Mapping[str, int], disable: bool = False) -> Iterator[RunProgress]:
    """Make one bar over ``totals`` (requests per lm-eval request type) current for a run."""
    run = RunProgress(totals, disable=disable)
    token = _CURRENT.set(run)
    try:
        yield run
    finally:
        _CURRENT.reset(token)
        run.close()
