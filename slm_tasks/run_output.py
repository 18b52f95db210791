"""What `slm-suite run` writes: checked before the evaluation, verified after it.

lm-eval's EvaluationTracker catches every exception while saving and only logs "Could not save
results aggregated" (lm_eval/loggers/evaluation_tracker.py); a run into a folder it cannot
write would print its scores and succeed with nothing on disk. Here the output folder is
checked before the first request, the tracker's complaints are collected, and each file is
read back before the run reports it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path

from slm_tasks.results.cost_record import SIDECAR_SUFFIX, CostRecord, record_of_results, sidecar_of
from slm_tasks.results.errors import BoardError
from slm_tasks.results.inputs import read_json

FIX = "choose another --output-path"
TRACKER_LOGGER = "lm_eval.loggers.evaluation_tracker"
# an earlier run's results file is read whole for its cost record; bigger ones are passed over
MAX_RESULTS_BYTES = 64 << 20


def check_before(output_path: Path, model_args: dict, board: bool) -> None:
    """Fail now, with one line, if the run's files could not be written under ``output_path``
    (its model folder is the one lm-eval's tracker will name from ``model_args``)."""
    from lm_eval.loggers.evaluation_tracker import GeneralConfigTracker
    from lm_eval.utils import sanitize_model_name

    from slm_tasks.leaderboards.api import BOARD_FILES
    from slm_tasks.leaderboards.outputs import OutputError, check_writable

    if output_path.suffix == ".json":
        raise OutputError(
            f"{output_path}: slm-suite run writes a folder (results, samples, cost record, "
            f"leaderboard), not one .json file; name a folder as --output-path"
        )
    check_writable(output_path, fix=FIX)
    model_folder = GeneralConfigTracker._get_model_name(model_args)
    if model_folder:
        check_writable(output_path / sanitize_model_name(model_folder), fix=FIX)
    if board:
        check_writable(output_path / "leaderboard", BOARD_FILES, fix=f"{FIX}, or pass --no-leaderboard")


def save(tracker, results: dict, samples: dict | None) -> Path:
    """Save lm-eval's results (+ samples) with ``tracker``; return the results file once it and
    every samples file are complete on disk, else raise a one-line OutputError."""
    from slm_tasks.leaderboards.outputs import OutputError

    started = time.time()
    with _tracker_complaints() as complaints:
        tracker.save_results_aggregated(results=results, samples=samples)
        if samples:
            for name in results["configs"]:
                tracker.save_results_samples(task_name=name, samples=samples[name])
    folder = Path(tracker.output_path) / str(tracker.general_config_tracker.model_name_sanitized)
    date_id = getattr(tracker, "date_id", None)
    cause = f" ({_readable(complaints[-1])})" if complaints else ""
    if not date_id:
        raise OutputError(f"{folder}: lm-eval could not save the results{cause}; {FIX}")
    results_file = folder / f"results_{date_id}.json"
    expected: dict[Path, int | None] = {results_file: None}  # path -> samples lines (None: results)
    for name, rows in (samples or {}).items():
        if name in results["configs"]:
            expected[folder / f"samples_{name}_{date_id}.jsonl"] = len(rows)
    for path, rows in expected.items():
        if not (_complete_results(path) if rows is None else _lines(path) == rows):
            # this run's own files, unique by their time stamp: a half-written one would only
            # make the folder unreadable for the board
            for own in expected:
                with contextlib.suppress(OSError):
                    # only what this save wrote: a file of that name from before stays
                    if not own.is_symlink() and own.stat().st_mtime >= started - 1:
                        own.unlink()
            what = "results" if rows is None else "samples"
            raise OutputError(f"{path}: lm-eval could not save the {what}{cause or ' (incomplete file)'}; {FIX}")
    return results_file


def _readable(logged: str) -> str:
    """``OSError(28, 'No space left on device')`` (the tracker logs repr(exc)) -> its message."""
    found = re.match(r"^\w+\((?:\d+, )?(['\"])(.+?)\1", logged)
    return found.group(2) if found else logged


def _complete_results(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(saved, dict) and "results" in saved


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0
    except OSError:
        return -1


@contextlib.contextmanager
def _tracker_complaints():
    """Collect what the tracker logs when a save fails: a warning, then ``repr(exception)`` at
    INFO. Those records are kept from the console unless it shows INFO already (-v)."""
    logger = logging.getLogger(TRACKER_LOGGER)
    shown = logger.isEnabledFor(logging.INFO)
    complaints: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            text = record.getMessage()
            if record.levelno >= logging.WARNING or (complaints and "Error" in text):
                complaints.append(text)

    handler = Collect()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = shown
    try:
        yield complaints
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def write_text_atomic(path: Path, text: str, fix: str = FIX) -> None:
    """``text`` into ``path`` (its folder created if needed) in full or not at all; no temporary
    file is left on failure; every OSError is a one-line OutputError ending in ``fix``."""
    from slm_tasks.leaderboards.outputs import OutputError, ensure_folder, write_error

    path = Path(path)
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise OutputError(f"{path}: {blocker} is a file, not a folder; {fix}")
    ensure_folder(path.parent, fix)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o644)
        with open(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise write_error(path, exc, fix) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


# ---- the runtime bench of a run that computed nothing ----------------------------------------
BENCH_MATCH_MODEL = ("name", "file_bytes", "quant", "n_params", "backend", "dequantised_to", "sha256")
BENCH_MATCH_SOFTWARE = ("backend_version", "backend_build")


def computed_nothing(cost: CostRecord) -> bool:
    """Every request of the run came from the response store."""
    return (cost.run.get("reused_requests") or 0) > 0 and cost.run.get("requests") == 0


def reusable_bench(output_path: Path, cost: CostRecord) -> tuple[dict, str] | None:
    """The bench of the newest cost record under ``output_path`` of the same model file on the
    same machine (hardware, threads, llama.cpp build), when this run computed nothing; else
    None. Returns (bench, the file it came from as ``<model folder>/<file>``)."""
    if not computed_nothing(cost):
        return None
    results = sorted(
        (p for p in output_path.glob("*/results_*.json") if not p.name.endswith(SIDECAR_SUFFIX)),
        key=lambda p: p.name,
        reverse=True,
    )
    for path in results:
        record, source = _read_record(path)
        if record is None or not record.benched or not _same_setup(record, cost):
            continue
        if record.bench.get("n_threads") != cost.hardware.get("threads"):
            continue
        shown = sidecar_of(path) if source.startswith("sidecar") else path
        return record.bench, f"{path.parent.name}/{shown.name}"
    return None


def _read_record(results_file: Path) -> tuple[CostRecord | None, str | None]:
    """The cost record of a results file, or (None, None) where none can be read: an earlier
    run's files that are broken are passed over, not this run's concern."""
    try:
        results = read_json(results_file, "lm-eval results file", cap=MAX_RESULTS_BYTES)
        return record_of_results(results, results_file)
    except BoardError:
        return None, None


def _same_setup(a: CostRecord, b: CostRecord) -> bool:
    def part(section: dict, fields=None):
        if not section:
            return None
        return {k: section.get(k) for k in fields} if fields else section

    return (
        part(a.model, BENCH_MATCH_MODEL) == part(b.model, BENCH_MATCH_MODEL) is not None
        and part(a.hardware) == part(b.hardware) is not None
        and part(a.software, BENCH_MATCH_SOFTWARE) == part(b.software, BENCH_MATCH_SOFTWARE)
    )
