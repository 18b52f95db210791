"""MMLU as a single lm-eval task whose prompts equal the 57 per-subject built-ins.

One task (rather than a 57-task group) keeps the problem-solving domain score a plain
average of three tasks: lm-eval aggregates groups over their leaf tasks.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from lm_eval.api.task import ConfigurableTask


class MMLUTask(ConfigurableTask):
    def __init__(self, config=None, **kwargs):
        config = dict(config or {})
        config.pop("class", None)
        super().__init__(config=config, **kwargs)
        self._by_subject = None
        # acc_macro rides along with acc: computed per doc below, averaged per subject.
        self._metric_fn_list["acc_macro"] = None
        self._aggregation_list["acc_macro"] = macro_mean
        self._higher_is_better["acc_macro"] = True

    def _subject_pool(self, subject):
        if self._by_subject is None:
            pools = defaultdict(list)
            for d in self.fewshot_docs() or []:
                pools[d["subject"]].append(d)
            self._by_subject = pools
        return self._by_subject.get(subject, [])

    def fewshot_context(self, doc, num_fewshot, *args, **kwargs):
        # lm-eval's mmlu_<subject> draws first_n from that subject's dev split only.
        if num_fewshot > 0 and getattr(self, "sampler", None) is not None:
            self.sampler.replace_df(self._subject_pool(doc["subject"]))
        return super().fewshot_context(doc, num_fewshot, *args, **kwargs)

    def process_results(self, doc, results):
        out = super().process_results(doc, results)
        if "acc" in out:
            out["acc_macro"] = (doc["subject"], out["acc"])
        return out


def macro_mean(items):
    """Plain mean over subjects of each subject's accuracy."""
    by = defaultdict(list)
    for subject, acc in items:
        by[subject].append(acc)
    return float(np.mean([np.mean(v) for v in by.values()]))
