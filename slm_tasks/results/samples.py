"""lm-eval's per-document samples (``--log_samples``): the one reader of samples files.

A samples file ``samples_<task>_<time>.jsonl`` holds one JSON object per document and
filter: ``doc_id``, ``filter``, the doc/prompt/target hashes and one value per metric.
``simple_evaluate(..., log_samples=True)`` returns the same objects in memory. Both become
:class:`DocScores`, one per filter, through :func:`doc_scores`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slm_tasks.results.errors import BoardError
from slm_tasks.results.inputs import text_lines

# Keys of a samples line that are not metric values.
SAMPLE_META = {
    "doc_id",
    "doc",
    "target",
    "arguments",
    "resps",
    "filtered_resps",
    "filter",
    "metrics",
    "doc_hash",
    "prompt_hash",
    "target_hash",
}
FILE_NAME = re.compile(r"^samples_(?P<task>.+)_(?P<time>\d{4}-\d\d-\d\dT[\d.\-]+)\.jsonl$")


@dataclass
class DocScores:
    """Per-document outcomes of one task under one filter."""

    doc_ids: list[int]
    values: dict[str, list[Any]]  # metric name -> one value per doc (same order as doc_ids)
    doc_hash: dict[int, str]
    prompt_hash: dict[int, str]
    target_hash: dict[int, str]
    n_choices: dict[int, int]  # loglikelihood requests per doc (= choices for multiple_choice)

    def numeric(self, metric: str) -> list[float] | None:
        """The metric as floats, or None when a value is not a plain number (e.g. acc_macro)."""
        raw = self.values.get(metric)
        if raw is None or len(raw) != len(self.doc_ids):
            return None
        out = []
        for v in raw:
            if isinstance(v, bool):
                v = float(v)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                return None
            out.append(float(v))
        return out

    def by_doc(self, metric: str) -> dict[int, float] | None:
        """doc_id -> the metric's value, or None as for :meth:`numeric`."""
        vals = self.numeric(metric)
        return None if vals is None else dict(zip(self.doc_ids, vals))


def read_rows(path: str | Path) -> list[dict]:
    """The sample objects of one samples file; a line that is not one is an error naming it."""
    rows = []
    for lineno, line in text_lines(path, "lm-eval samples file"):  # regular files, bounded lines
        if not line.strip():
            continue
        try:
            s = json.loads(line)
            int(s["doc_id"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, RecursionError):
            raise BoardError(
                f"{path}: line {lineno} is not an lm-eval sample (JSON with doc_id); "
                f"the file is truncated or not from lm_eval --log_samples"
            ) from None
        rows.append(s)
    return rows


def doc_scores(rows: Iterable[dict], source: str | Path) -> dict[str, DocScores]:
    """Per filter: doc ids, metric values and hashes of lm-eval sample objects."""
    by_filter: dict[str, DocScores] = {}
    for s in rows:
        doc_id = int(s["doc_id"])
        flt = s.get("filter", "none")
        ds = by_filter.get(flt)
        if ds is None:
            ds = by_filter[flt] = DocScores([], {}, {}, {}, {}, {})
        metrics = s.get("metrics") or [k for k in s if k not in SAMPLE_META]
        ds.doc_ids.append(doc_id)
        for m in metrics:
            ds.values.setdefault(m, []).append(s.get(m))
        ds.doc_hash[doc_id] = s.get("doc_hash")
        ds.prompt_hash[doc_id] = s.get("prompt_hash")
        ds.target_hash[doc_id] = s.get("target_hash")
        ds.n_choices[doc_id] = len(s.get("arguments") or {})
    for flt, ds in by_filter.items():
        if len(set(ds.doc_ids)) != len(ds.doc_ids):
            raise BoardError(f"{source}: doc ids repeat within filter '{flt}'; the samples are corrupt")
    return by_filter


def read_samples(path: str | Path) -> dict[str, DocScores]:
    """Per filter: doc ids, metric values and hashes from an lm-eval samples file."""
    return doc_scores(read_rows(path), path)


def samples_files(folder: str | Path, tasks: Iterable[str] | None = None, stamp: str | None = None) -> dict[str, Path]:
    """task -> its samples file in ``folder``: the one of results ``stamp``, else the newest."""
    wanted = None if tasks is None else set(tasks)
    out: dict[str, Path] = {}
    for p in sorted(Path(folder).glob("samples_*.jsonl")):  # by name = by time
        m = FILE_NAME.match(p.name)
        if m and (wanted is None or m["task"] in wanted) and (stamp is None or m["time"] == stamp):
            out[m["task"]] = p
    return out
