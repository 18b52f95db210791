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


def _missing_message(n: int) -> str:
    where = "; ".join(
        f"{hub}{'/' + cfg if cfg else ''} has no '{split}' split in the mirror {root}"
        for (hub, cfg, split), root in sorted(MISSING_FEWSHOT.items(), key=str)
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
