"""Few-shot samplers: lm-eval's own, plus a clear error when the examples are missing.

``Sampler`` behaves exactly like lm-eval's ``default`` sampler (same seed handling, same
draws), so prompts match the built-in tasks. When the few-shot split was absent from an
offline mirror (the loader then hands lm-eval an empty split, so 0-shot still runs), a
few-shot request raises :class:`FewshotUnavailable` instead of lm-eval's bare assertion.
"""

from __future__ import annotations

from lm_eval.api.samplers import ContextSampler, FirstNSampler

from slm_tasks.datacheck import missing_message
from slm_tasks.errors import SLMError


class FewshotUnavailable(SLMError):
    pass


class _Explained:
    """A sampler that, on an empty pool, says which split is missing.

    lm-eval builds samplers from the examples alone, so ``source`` (the task's
    dataset_kwargs) is set where the task is known (:func:`drop_unrunnable`); without it the
    mirror in force is checked for every task's few-shot split.
    """

    def __init__(self, df=None, *, source: dict | None = None, **kwargs):
        super().__init__(df, **kwargs)
        self.source = source

    def sample(self, n, eval_doc=None, df=None, **kwargs):
        if n > 0 and not (df or self.df):
            raise FewshotUnavailable(missing_message(n, self.source))
        return super().sample(n, eval_doc=eval_doc, df=df, **kwargs)


class Sampler(_Explained, ContextSampler):
    """lm-eval's ``default`` sampler."""


class FirstN(_Explained, FirstNSampler):
    """lm-eval's ``first_n`` sampler."""


def task_source(task) -> dict:
    """Where a loaded task's few-shot examples come from: its dataset_kwargs and mirror."""
    meta = getattr(task.config, "metadata", None) or {}
    return dict(task.config.dataset_kwargs or {}, slm_data_dir=meta.get("slm_data_dir"))


def drop_unrunnable(loaded: dict, requested) -> list[tuple[str, str]]:
    """Remove, from groups, slm tasks whose YAML asks for few-shot examples that are missing.

    Offline mirrors lack some few-shot splits; a group such as ``slm_icl`` then still runs
    every variant it can, and says which it skipped and why. A task named directly is
    kept, so asking for it fails with :class:`FewshotUnavailable`. Returns (task, reason).
    """
    requested = {r for r in requested if isinstance(r, str)}
    dropped = []
    for name, task in list(loaded.get("tasks", {}).items()):
        sampler = getattr(task, "sampler", None)
        if not isinstance(sampler, _Explained):
            continue
        sampler.source = task_source(task)
        shots = getattr(task.config, "num_fewshot", 0) or 0
        if name in requested or shots <= 0 or sampler.df:
            continue
        dropped.append((name, missing_message(shots, sampler.source)))
        del loaded["tasks"][name]
    if dropped:
        gone = {n for n, _ in dropped}
        for group in loaded.get("groups", {}).values():
            for child in list(group._children):
                if child in gone:
                    del group._children[child]
        loaded["group_map"] = {g.name: g.child_names for g in loaded.get("groups", {}).values()}
    return dropped
