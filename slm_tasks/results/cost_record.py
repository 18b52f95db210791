"""The ``slm-suite.cost/1`` record: its schema name, its shape and its one reader.

The meter (:mod:`slm_tasks.adapters.cost`) writes the record; everything else reads it through
:class:`CostRecord` — the run's summary, the board's cost columns, the gate's budgets and the
bench reuse of ``slm-suite run``. The record is stored in the results file, as
``results["config"]["slm_cost"]`` (lm-eval puts the model's ``get_model_info()`` there for
every run of our backends); earlier versions also wrote it beside the results file as
``results_<time>.cost.json``, which :func:`record_of_results` still reads (docs/llamacpp.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slm_tasks.results.errors import BoardError
from slm_tasks.results.inputs import read_json

SCHEMA = "slm-suite.cost/1"
CONFIG_KEY = "slm_cost"  # results["config"][CONFIG_KEY]
SIDECAR_SUFFIX = ".cost.json"  # results_<time>.cost.json, written by earlier versions
SECTIONS = ("model", "hardware", "software", "run", "tasks", "bench", "cluster")
# the figures of the ``run`` section and of each ``tasks`` entry (CostMeter writes them all)
RUN_KEYS = (
    "wall_s",
    "prompt_tokens",
    "generated_tokens",
    "prefill_tok_s",
    "decode_ms_per_token",
    "ttft_ms",
    "throughput_tok_s",
    "peak_rss_bytes",
    "peak_gpu_bytes",
    "energy_j",
    "energy_per_token_j",
    "energy_source",
    "energy_unavailable_reason",
    "requests",
    "truncated_requests",
    "reused_requests",
    "reused_stored_s",
)


def number(x: Any) -> float | None:
    """A finite number as float; anything else (None, a bool, a string, NaN) as None."""
    ok = isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
    return float(x) if ok else None


@dataclass(frozen=True)
class CostRecord:
    """One checked cost record; a section the record lacks (or holds as null) is empty."""

    where: str  # the file it was read from (named in errors and notes)
    model: dict = field(default_factory=dict)
    hardware: dict = field(default_factory=dict)
    software: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)
    tasks: dict = field(default_factory=dict)
    bench: dict = field(default_factory=dict)
    cluster: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict, repr=False, compare=False)  # the JSON as read

    @classmethod
    def from_json(cls, data: Any, where: str | Path) -> CostRecord:
        """Check ``data`` (the parsed JSON) and wrap it; a BoardError naming ``where`` if it
        is not a ``slm-suite.cost/1`` record."""
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            got = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise BoardError(f"{where}: cost record schema is {got!r}, expected '{SCHEMA}'")
        for key in SECTIONS:
            if data.get(key) is not None and not isinstance(data[key], dict):
                raise BoardError(f"{where}: cost record field '{key}' must be an object or null")
        return cls(str(where), **{k: data.get(k) or {} for k in SECTIONS}, raw=data)

    # ---- figures --------------------------------------------------------------------------
    def run_figure(self, key: str) -> float | None:
        """A number of the evaluation run's section (``wall_s``, ``ttft_ms``, ...)."""
        return number(self.run.get(key))

    @property
    def benched(self) -> bool:
        """The runtime bench ran (adapters/bench.py): its entries carry a protocol."""
        return bool(self.bench.get("protocol"))

    def bench_median(self, key: str) -> float | None:
        """A bench figure: the median of its runs (or the figure itself where one was kept)."""
        entry = self.bench.get(key)
        return number(entry.get("median")) if isinstance(entry, dict) else number(entry)

    def bench_long_context(self) -> dict[int, dict]:
        """The bench's long-context figures per length (tokens): ``pp_tok_s`` and
        ``tg_ms_per_token`` (medians of ``runs``), ``kv_mib``, ``compute_mib``, ``rss_bytes``;
        empty when the bench did not run that protocol."""
        entry = ((self.bench.get("protocols") or {}).get("long-context")) or {}
        out = {}
        for n, m in (entry.get("lengths") or {}).items():
            out[int(n)] = {
                "runs": entry.get("runs"),
                "pp_tok_s": number((m.get("pp_tok_s") or {}).get("median")),
                "tg_ms_per_token": number((m.get("tg_ms_per_token") or {}).get("median")),
                **{k: number(m.get(k)) for k in ("kv_mib", "compute_mib", "rss_bytes")},
            }
        return out

    def bench_values(self, key: str) -> list[float] | None:
        """Every bench run's value of ``key`` where all are recorded and positive, else None."""
        entry = self.bench.get(key)
        values = entry.get("values") if isinstance(entry, dict) else None
        if not isinstance(values, list) or not values:
            return None
        numbers = [number(v) for v in values]
        return numbers if all(v is not None and v > 0 for v in numbers) else None

    @property
    def model_name(self) -> str | None:
        name = self.model.get("name")
        return str(name) if name else None

    @property
    def on_gpu(self) -> bool:
        """The evaluation ran on a GPU (its memory is the GPU's, not the process's)."""
        return bool(self.hardware.get("gpu")) or self.model.get("backend") == "vllm"

    @property
    def machine(self) -> str:
        """The machine in a word: its GPU's name, else its CPU."""
        return str((self.hardware.get("gpu") or {}).get("name") or self.hardware.get("cpu"))


def record_of_results(results: dict, results_file: Path | None = None) -> tuple[CostRecord | None, str | None]:
    """The cost record of one results file: ``(record, where from)``, or ``(None, None)``.

    A sidecar ``results_<time>.cost.json`` (written by earlier versions of ``slm-suite run``,
    which completed that copy) wins where present; a sidecar that is there but cannot be read is
    refused by name. Otherwise ``results["config"]["slm_cost"]``."""
    if results_file is not None:
        sidecar = sidecar_of(results_file)
        if sidecar.is_symlink() or sidecar.exists():
            return CostRecord.from_json(read_json(sidecar, "slm-suite cost record"), sidecar), f"sidecar {sidecar.name}"
    config = results.get("config") if isinstance(results, dict) else None
    data = config.get(CONFIG_KEY) if isinstance(config, dict) else None
    if data is None:
        return None, None
    return CostRecord.from_json(data, results_file or "results"), "results config"


def sidecar_of(results_file: Path) -> Path:
    return Path(results_file).with_suffix(SIDECAR_SUFFIX)
