"""Few-shot samplers: lm-eval's own, plus a clear error when the examples are missing.

``Sampler`` behaves exactly like lm-eval's ``default`` sampler (same seed handling, same
draws), so prompts match the built-in tasks. When the few-shot split was absent from an
offline mirror (the loader then hands lm-eval an empty split, so 0-shot still runs), a
few-shot request raises :class:`FewshotUnavailable` instead of lm-eval's bare assertion.
"""

from __future__ import annotations

from lm_eval.api.samplers import ContextSampler, FirstNSampler

from slm_tasks.data import ENV_VAR, MISSING_FEWSHOT
from slm_tasks.errors import SLMError


class FewshotUnavailable(SLMError):
    pass


def _missing_message(n: int, dataset_kwargs: dict | None = None) -> str:
    missing = sorted(MISSING_FEWSHOT.items(), key=str)
    if dataset_kwargs:  # the task is known: name only its own split
        key = (dataset_kwargs.get("hub_id"), dataset_kwargs.get("hub_config"), dataset_kwargs.get("fewshot_split"))
        missing = [(k, v) for k, v in missing if k == key] or missing
    where = "; ".join(
        f"{hub}{'/' + cfg if cfg else ''} has no '{split}' split in the mirror {root}"
        for (hub, cfg, split), root in missing
    ) or "the task's few-shot split is empty"
    return (
        f"{n}-shot needs few-shot examples, but {where}. Run this task 0-shot, point "
        f"{ENV_VAR} at a mirror that has the split, or unset {ENV_VAR} to use the hub."
    )


class Sampler(ContextSampler):
    def sample(self, n, eval_doc=None, df=None, **kwargs):
        if n > 0 and not (df or self.df):
            raise FewshotUnavailable(_missing_message(n))
        return super().sample(n, eval_doc=eval_doc, df=df, **kwargs)


class FirstN(FirstNSampler):
    def sample(self, n, eval_doc=None, df=None, **kwargs):
        if n > 0 and not (df or self.df):
            raise FewshotUnavailable(_missing_message(n))
        return super().sample(n, eval_doc=eval_doc, df=df, **kwargs)


class FirstNSameSubject(ContextSampler):
    """MMLU as one task: the first ``n`` dev examples of the eval doc's own subject.

    This reproduces lm-eval's per-subject ``mmlu_<subject>`` tasks (``first_n`` over that
    subject's dev split) while scoring all subjects in one task.
    """

    key = "subject"

    def sample(self, n, eval_doc=None, df=None, **kwargs):
        if n <= 0:
            return []
        pool = df or self.df
        if not pool:
            raise FewshotUnavailable(_missing_message(n))
        subject = eval_doc[self.key] if eval_doc is not None else None
        same = [d for d in pool if d[self.key] == subject]
        if len(same) < n:
            raise FewshotUnavailable(
                f"{n}-shot needs {n} dev examples for subject '{subject}', the split has {len(same)}"
            )
        return same[:n]


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
        shots = getattr(task.config, "num_fewshot", 0) or 0
        if (name in requested or shots <= 0 or not isinstance(sampler, (Sampler, FirstN))
                or sampler.df):
            continue
        dropped.append((name, _missing_message(shots, task.config.dataset_kwargs)))
        del loaded["tasks"][name]
    if dropped:
        gone = {n for n, _ in dropped}
        for group in loaded.get("groups", {}).values():
            for child in list(group._children):
                if child in gone:
                    del group._children[child]
        loaded["group_map"] = {g.name: g.child_names for g in loaded.get("groups", {}).values()}
    return dropped
