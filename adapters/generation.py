"""Generation requests as a backend's engine receives them: lm-eval's generation kwargs
normalised by its own rules (stop sequences with the end-of-text string, ``max_gen_toks``,
sampling settings), prompts truncated from the left to fit, and the plan the progress bar
reads (the prompt tokens each job evaluates past the prefix it shares with the job before)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lm_eval.models.utils import handle_stop_sequences, maybe_truncate, normalize_gen_kwargs

from slm_tasks.adapters import progress, scoring

log = logging.getLogger(__name__)


@dataclass
class GenJob:
    """One generation request, normalised by lm-eval's rules."""

    index: int
    ids: tuple[int, ...]  # prompt tokens, truncated from the left to fit
    until: list[str]  # stop sequences (the end-of-text string included)
    max_gen: int
    do_sample: bool
    options: dict  # the remaining generation kwargs (temperature, top_p, ...)
    truncated: bool
    task: str | None


def generation_jobs(
    requests: Sequence, eos_text: str, default_max_gen: int, max_length: int, prompt_ids: Callable[[str], list[int]]
) -> list[GenJob]:
    """One :class:`GenJob` per ``generate_until`` request, for a model of ``max_length`` tokens;
    ``prompt_ids`` encodes a context (never empty)."""
    jobs = []
    for idx, req in enumerate(requests):
        context, gen_kwargs = req.args
        kwargs = normalize_gen_kwargs(dict(gen_kwargs), default_max_gen)
        until = handle_stop_sequences(kwargs.pop("until", None), eos=eos_text)
        max_gen = int(kwargs.pop("max_gen_toks"))
        if max_gen >= max_length:
            log.warning(
                "max_gen_toks=%d does not fit the model's %d tokens; generating at most %d tokens",
                max_gen,
                max_length,
                max_length // 2,
            )
            max_gen = max_length // 2
        do_sample = bool(kwargs.pop("do_sample", False))
        ids = prompt_ids(context)
        cut = len(ids) + max_gen > max_length
        ids, max_gen = maybe_truncate(ids, max_gen_toks=max_gen, max_model_len=max_length, verbose=False)
        jobs.append(GenJob(idx, tuple(ids), until, max_gen, do_sample, kwargs, cut, getattr(req, "task_name", None)))
    n_cut = sum(j.truncated for j in jobs)
    if n_cut:
        log.warning(
            "%d generation prompts were truncated from the left to fit the model's %d tokens", n_cut, max_length
        )
    return jobs


def generation_plan(units: list[list[GenJob]], stored: set[int]) -> list[progress.Job]:
    """The jobs still to compute, in order, each with the prompt tokens past the prefix it
    shares with the job before it (what an engine keeping its cached prefix evaluates)."""
    plan, prev = [], ()
    for unit in units:
        for job in unit:
            if job.index not in stored:
                plan.append(
                    progress.Job(job.task, len(job.ids) - scoring.common_prefix_len(prev, job.ids), job.max_gen)
                )
            prev = job.ids
    return plan
