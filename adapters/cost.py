"""Hardware cost of an evaluation run: the ``slm-suite.cost/1`` record.

A :class:`CostMeter` books units of work (a group of requests, one generation) with
:meth:`CostMeter.measure`, splitting each unit's time, energy and tokens over the tasks
its requests came from (lm-eval hands the adapter every task's requests in one call, so
attribution goes by ``Instance.task_name``). :meth:`CostMeter.record` returns the record
described in docs/llamacpp.md (its schema name and keys are defined in
:mod:`slm_tasks.results.cost_record`, beside its reader); values never measured are ``None``.
"""

from __future__ import annotations

import contextlib
import platform
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields

import psutil

from slm_tasks.adapters.hardware import RaplReader
from slm_tasks.results.cost_record import RUN_KEYS, SCHEMA

__all__ = ["RUN_KEYS", "SCHEMA", "CostMeter", "Work", "software_versions", "task_shares"]


@dataclass
class Work:
    """What one unit of work did; filled in by the engine code inside ``measure``."""

    prompt_tokens: int = 0  # tokens evaluated in prompt batches (contexts, continuations)
    generated_tokens: int = 0  # tokens produced by generation
    prefill_s: float = 0.0  # seconds spent evaluating prompt tokens
    decode_s: float = 0.0  # seconds spent on generation steps after the first token
    decode_tokens: int = 0  # generation steps timed in decode_s
    ttft_s: list[float] = field(default_factory=list)  # per generation request
    requests: int = 0
    truncated_requests: int = 0


@dataclass
class _Tally:
    wall_s: float = 0.0
    prompt_tokens: float = 0.0
    generated_tokens: float = 0.0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    decode_tokens: float = 0.0
    ttft_sum: float = 0.0
    ttft_n: float = 0.0
    requests: float = 0.0
    truncated_requests: float = 0.0
    energy_j: float = 0.0
    reused_requests: int = 0  # answered from the response store, not computed here
    reused_stored_s: float = 0.0  # what those answers took when they were computed
    reused_untimed: int = 0  # reused answers stored without a timing

    def book(self, w: Work, wall: float, energy: float, share: float = 1.0) -> None:
        self.wall_s += wall * share
        self.energy_j += energy * share
        self.prompt_tokens += w.prompt_tokens * share
        self.generated_tokens += w.generated_tokens * share
        self.prefill_s += w.prefill_s * share
        self.decode_s += w.decode_s * share
        self.decode_tokens += w.decode_tokens * share
        self.ttft_sum += sum(w.ttft_s) * share
        self.ttft_n += len(w.ttft_s) * share
        self.requests += w.requests * share
        self.truncated_requests += w.truncated_requests * share

    def add(self, other: Mapping) -> None:
        """Add a tally taken from another meter (:meth:`CostMeter.take`)."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + other.get(f.name, 0))


def _ratio(num: float, den: float, scale: float = 1.0) -> float | None:
    return num / den * scale if den > 0 else None


class CostMeter:
    """Accumulates cost per run and per task; see the module docstring."""

    def __init__(
        self,
        model: Mapping,
        hardware: Mapping,
        software: Mapping,
        energy: tuple[RaplReader | None, str | None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.model, self.hardware, self.software = dict(model), dict(hardware), dict(software)
        self._clock = clock  # seconds; tests drive it to book exact durations
        self._rapl, self._energy_reason = energy if energy is not None else RaplReader.open()
        self._proc = psutil.Process()
        self.peak_rss = self._proc.memory_info().rss
        self.run = _Tally()
        self.tasks: dict[str, _Tally] = {}
        self.bench: dict | None = None

    def sample_memory(self) -> int:
        rss = self._proc.memory_info().rss
        self.peak_rss = max(self.peak_rss, rss)
        return rss

    def _energy(self) -> float:
        if self._rapl is None:
            return 0.0
        try:
            return self._rapl.joules()
        except OSError as exc:  # counters vanished mid-run: stop reporting energy
            self._rapl, self._energy_reason = None, f"reading RAPL failed during the run: {exc}"
            return 0.0

    @contextlib.contextmanager
    def measure(self, shares: Mapping[str | None, float]) -> Iterator[Work]:
        """Time one unit of work; ``shares`` maps task name -> fraction of the unit (sum 1)."""
        work = Work()
        e0, t0 = self._energy(), self._clock()
        try:
            yield work
        finally:
            wall = self._clock() - t0
            energy = self._energy() - e0
            self.run.book(work, wall, energy)
            for task, share in shares.items():
                self.tasks.setdefault(task or "unknown", _Tally()).book(work, wall, energy, share)
            self.sample_memory()

    def reused(self, task: str | None, stored_s: float | None) -> None:
        """Book one answer taken from the response store with the seconds it took then."""
        for t in (self.run, self.tasks.setdefault(task or "unknown", _Tally())):
            t.reused_requests += 1
            if stored_s is None:
                t.reused_untimed += 1
            else:
                t.reused_stored_s += float(stored_s)

    def _summary(self, t: _Tally, peak_rss: int | None) -> dict:
        tokens = t.prompt_tokens + t.generated_tokens
        energy = t.energy_j if self._rapl is not None else None
        return {
            "wall_s": round(t.wall_s, 6),
            "prompt_tokens": round(t.prompt_tokens),
            "generated_tokens": round(t.generated_tokens),
            "prefill_tok_s": _ratio(t.prompt_tokens, t.prefill_s),
            "decode_ms_per_token": _ratio(t.decode_s, t.decode_tokens, 1000.0),
            "ttft_ms": _ratio(t.ttft_sum, t.ttft_n, 1000.0),
            "throughput_tok_s": _ratio(tokens, t.wall_s),
            "peak_rss_bytes": peak_rss,
            "peak_gpu_bytes": None,
            "energy_j": energy,
            "energy_per_token_j": _ratio(energy, tokens) if energy is not None else None,
            "energy_source": self._rapl.source if self._rapl is not None else None,
            "energy_unavailable_reason": self._energy_reason if self._rapl is None else None,
            "requests": round(t.requests),
            "truncated_requests": round(t.truncated_requests),
            # work reused from the response store: its stored timings, never counted in wall_s
            "reused_requests": t.reused_requests,
            "reused_stored_s": round(t.reused_stored_s, 6) if t.reused_requests > t.reused_untimed else None,
        }

    def record(self) -> dict:
        """The ``slm-suite.cost/1`` record (JSON-serialisable)."""
        self.sample_memory()
        return {
            "schema": SCHEMA,
            "model": dict(self.model),
            "hardware": dict(self.hardware),
            "software": dict(self.software),
            "run": self._summary(self.run, self.peak_rss),
            # peak memory is a property of the process, not attributable to one task
            "tasks": {name: self._summary(t, None) for name, t in sorted(self.tasks.items())},
            "bench": self.bench,
        }

    # --- cluster runs: each worker's meter books its shards, the driver's adds them up -------
    def take(self) -> dict:
        """The run and per-task tallies booked since the last take (plain dicts that travel
        between processes), then start again from zero."""
        taken = {"run": asdict(self.run), "tasks": {name: asdict(t) for name, t in self.tasks.items()}}
        self.run, self.tasks = _Tally(), {}
        return taken

    def add(self, taken: Mapping) -> None:
        """Book tallies another meter took (:meth:`take`) as if measured here."""
        self.run.add(taken["run"])
        for name, t in taken["tasks"].items():
            self.tasks.setdefault(name, _Tally()).add(t)


def task_shares(tasks: Sequence[str | None], weights: Sequence[int]) -> dict[str | None, float]:
    """How one unit of work splits over the tasks of its requests: by each request's tokens
    (a long few-shot prompt costs more than a short one), every request counting at least one."""
    per: Counter = Counter()
    for t, w in zip(tasks, weights):
        per[t] += max(int(w), 1)
    total = sum(per.values())
    return {t: n / total for t, n in per.items()}


def software_versions(backend_version: str | None, backend_build: str | None) -> dict:
    """The cost record's ``software`` section."""
    from importlib.metadata import PackageNotFoundError, version

    def ver(dist: str) -> str | None:
        try:
            return version(dist)
        except PackageNotFoundError:
            return None

    return {
        "backend_version": backend_version,
        "backend_build": backend_build,
        "python": platform.python_version(),
        "lm_eval": ver("lm_eval"),
        "slm_suite": ver("slm-suite"),
    }
