"""One progress bar for a whole run, across lm-eval's request phases.

lm-eval hands a model its requests one type at a time (all loglikelihood requests, then all
generations), so a bar per call cannot say how long the run will take. ``slm-suite run``
counts every phase's requests before the first one starts (:class:`RunPlan`) and makes the
plan current for the run (:func:`planned`); the backends then report into one bar whose
remaining time adds up every phase: the phase running now at its measured rate, phases
already timed at theirs, and a phase not yet timed is named as such (the time shown is then
a lower bound), never guessed.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from tqdm import tqdm

_CURRENT: contextvars.ContextVar[RunProgress | None] = contextvars.ContextVar("slm_run_progress", default=None)
PHASE_NAMES = {"loglikelihood": "scoring", "loglikelihood_rolling": "scoring (rolling)",
               "generate_until": "generation"}


@dataclass
class _Phase:
    total: int
    done: int = 0
    seconds: float = 0.0  # time spent on the ``done`` requests

    def rate(self) -> float | None:
        """Seconds per request, once a few have been timed."""
        return self.seconds / self.done if self.done >= min(3, self.total) and self.seconds > 0 else None


@dataclass
class RunProgress:
    """Requests per phase of a run, and one bar over all of them."""

    totals: Mapping[str, int]
    disable: bool = False
    phases: dict[str, _Phase] = field(init=False)

    def __post_init__(self):
        self.phases = {k: _Phase(int(n)) for k, n in self.totals.items() if n}
        self._bar = tqdm(total=sum(p.total for p in self.phases.values()), disable=self.disable, file=sys.stderr,
                         desc="slm-suite", unit="req", dynamic_ncols=True,
                         bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")

    def eta(self) -> tuple[float, list[str]]:
        """(seconds left for the timed phases, names of phases left that are not yet timed)."""
        left, untimed = 0.0, []
        for kind, p in self.phases.items():
            if p.done >= p.total:
                continue
            rate = p.rate()
            if rate is None:
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
    def phase(self, kind: str, n: int) -> Iterator[_PhaseBar]:
        """The bar for ``n`` requests of ``kind`` (a call may carry fewer than planned, e.g.
        when the response store answers some: the plan shrinks to what is computed)."""
        p = self.phases.setdefault(kind, _Phase(0))
        grow = n - (p.total - p.done)
        if grow:
            p.total += grow
            self._bar.total += grow
        handle = _PhaseBar(self, kind)
        self._bar.set_postfix_str(self._postfix(kind), refresh=True)
        yield handle

    def skip(self, kind: str, n: int) -> None:
        """``n`` planned requests of ``kind`` need no computing (answered from the store)."""
        p = self.phases.get(kind)
        if p is None or n <= 0:
            return
        n = min(n, p.total - p.done)
        p.total -= n
        self._bar.total -= n
        self._bar.refresh()

    def _advance(self, kind: str, n: int, seconds: float) -> None:
        p = self.phases[kind]
        p.done += n
        p.seconds += seconds
        self._bar.set_postfix_str(self._postfix(kind), refresh=False)
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


class _PhaseBar:
    """What a backend holds while it answers one call: ``update(n)`` like a tqdm bar."""

    def __init__(self, run: RunProgress, kind: str):
        self.run, self.kind = run, kind
        self._last = time.perf_counter()

    def update(self, n: int) -> None:
        now = time.perf_counter()
        self.run._advance(self.kind, n, now - self._last)
        self._last = now


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
