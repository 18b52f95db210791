"""The ``slm-suite bench`` table in llama-bench's shape, as Markdown, CSV or JSON.

One row per test. Fields carry llama-bench's names (``model_type``, ``model_size``,
``model_n_params``, ``backends``, ``n_threads``, ``n_prompt``, ``n_gen``, ``n_depth``,
``avg_ts``, ``stddev_ts``, ...; JSON adds ``samples_ns`` / ``samples_ts``), plus ``test``
and the millisecond figures llama-bench leaves out: ms/token of the tg tests and the time
to first token. Built from a cost record's ``bench`` key, so a saved record renders the
same table.
"""

from __future__ import annotations

import csv
import io
import json
import re

FORMATS = ("md", "csv", "json")
FIELDS = (
    "build",
    "cpu_info",
    "gpu_info",
    "backends",
    "model_filename",
    "model_type",
    "model_size",
    "model_n_params",
    "n_batch",
    "n_ubatch",
    "n_threads",
    "test",
    "n_prompt",
    "n_gen",
    "n_depth",
    "test_time",
    "avg_ns",
    "stddev_ns",
    "avg_ts",
    "stddev_ts",
    "avg_ms_per_token",
    "stddev_ms_per_token",
    "avg_ttft_ms",
    "stddev_ttft_ms",
)
SAMPLES = ("samples_ns", "samples_ts")  # JSON only, as llama-bench
COLUMNS = ("model", "size", "params", "backend", "threads", "test", "t/s", "ms/token", "ttft ms")
RIGHT = {"size", "params", "threads", "t/s", "ms/token", "ttft ms"}


def backends(build: str) -> str:
    """The backends named in llama.cpp's system info ('CUDA : ARCHS = 890 | ... | CPU : SSE3 = 1 | ...'):
    the accelerators, or CPU when there is none, as llama-bench's ``backends`` field."""
    names = re.findall(r"(?:^|\|)\s*([A-Za-z][\w-]*) :", build.partition("; ")[2])
    return ",".join(n for n in names if n != "CPU") or "CPU"


def rows(record: dict) -> list[dict]:
    """The table's rows: the record's ``bench.tests`` with the model, machine and build."""
    b, model, hw = record["bench"], record["model"], record.get("hardware") or {}
    common = {
        "build": b["build"],
        "cpu_info": hw.get("cpu"),
        "gpu_info": (hw.get("gpu") or {}).get("name"),
        "backends": backends(b["build"]),
        "model_filename": model.get("path"),
        "model_type": " ".join(str(x) for x in (model.get("name"), model.get("quant")) if x),
        "model_size": model.get("file_bytes"),
        "model_n_params": model.get("n_params"),
        # one llama_decode call per batch: the micro-batch is the batch
        "n_batch": b["n_batch"],
        "n_ubatch": b["n_batch"],
        "n_threads": b["n_threads"],
    }
    return [{**common, **{k: t[k] for k in FIELDS + SAMPLES if k in t}} for t in b["tests"]]


def _pm(mean, sd) -> str:
    return "" if mean is None else f"{mean:.2f} ± {sd:.2f}"


def _size(n_bytes) -> str:
    return "" if n_bytes is None else f"{n_bytes / 2**30:.2f} GiB"


def _params(n) -> str:
    return "" if n is None else f"{n / 1e6:.2f} M" if n < 1e9 else f"{n / 1e9:.2f} B"


def markdown(table: list[dict], build: str) -> str:
    cells = [
        [
            r["model_type"],
            _size(r["model_size"]),
            _params(r["model_n_params"]),
            r["backends"],
            str(r["n_threads"]),
            r["test"],
            _pm(r["avg_ts"], r["stddev_ts"]),
            _pm(r["avg_ms_per_token"], r["stddev_ms_per_token"]),
            _pm(r["avg_ttft_ms"], r["stddev_ttft_ms"]),
        ]
        for r in table
    ]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(COLUMNS)]

    def line(values) -> str:
        return (
            "| "
            + " | ".join(v.rjust(w) if c in RIGHT else v.ljust(w) for c, v, w in zip(COLUMNS, values, widths))
            + " |"
        )

    rule = "| " + " | ".join("-" * (w - 1) + ":" if c in RIGHT else "-" * w for c, w in zip(COLUMNS, widths)) + " |"
    return "\n".join([line(COLUMNS), rule, *map(line, cells), "", f"build: {build}"]) + "\n"


def long_context_memory(record: dict) -> str:
    """The long-context protocol's memory per length (Markdown; empty without it): the
    buffers llama.cpp allocates for a context of that length and the process's resident
    memory after its prefill."""
    entry = ((record["bench"].get("protocols") or {}).get("long-context")) or {}
    if not entry:
        return ""
    lines = [
        "| length | n_ctx | KV cache MiB | compute buffer MiB | output buffer MiB | RSS MiB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n, m in entry["lengths"].items():
        lines.append(
            f"| {n} | {m['n_ctx']} | {m['kv_mib']:.2f} | {m['compute_mib']:.2f} | {m['output_mib']:.2f} "
            f"| {m['rss_bytes'] / 2**20:.0f} |"
        )
    lines += [f"| {n} | not applicable: {why} | | | | |" for n, why in entry["not_applicable"].items()]
    return "\n".join(lines) + "\n"


def render(record: dict, fmt: str = "md") -> str:
    """The table of a bench record in ``fmt`` (md, csv or json), ending with a newline."""
    table = rows(record)
    if fmt == "md":
        memory = long_context_memory(record)
        return markdown(table, record["bench"]["build"]) + (f"\n{memory}" if memory else "")
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, FIELDS, extrasaction="ignore", quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)
        return buf.getvalue()
    if fmt == "json":
        return json.dumps(table, indent=2) + "\n"
    raise ValueError(f"unknown table format '{fmt}'; choose from {', '.join(FORMATS)}")
