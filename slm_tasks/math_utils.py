"""Data helper for math tasks: one task over several hub configs.

lm-eval's ``minerva_math`` is a group of seven per-subject tasks. slm-suite scores it as
*one* task (``slm_minerva_math``), so the math domain score stays a plain average of
tasks: lm-eval aggregates groups over their leaf tasks, and a nested seven-subject group
would count as seven tasks. One task over all 5,000 MATH test problems gives exactly the
size-weighted mean that lm-eval's ``minerva_math`` group reports.

Prompts, answer normalisation and equivalence are lm-eval's own
(``lm_eval.tasks.minerva_math.utils``), referenced from the task YAMLs.
"""

from __future__ import annotations

from typing import Any

from slm_tasks import data


def load_configs(
    hub_id: str,
    hub_configs: list[str],
    eval_split: str | None = None,
    fewshot_split: str | None = None,
    lite_n: int | None = None,
    lite_strata: str | None = None,
    **kwargs: Any,
):
    """Load every config in ``hub_configs`` with :func:`slm_tasks.data.load` and
    concatenate them split by split, in the order given.

    Only splits present in every config are kept. ``lite_n``/``lite_strata`` apply to
    the concatenated eval split (so a stratified lite subset spans all configs).
    """
    import datasets

    if not hub_configs:
        raise data.SLMDataError(f"{hub_id}: hub_configs is empty; list the configs to concatenate")
    kwargs.pop("hub_config", None)
    parts = [
        data.load(hub_id, hub_config=c, eval_split=eval_split, fewshot_split=fewshot_split, **kwargs)
        for c in hub_configs
    ]
    splits = [s for s in parts[0] if all(s in p for p in parts[1:])]
    out = datasets.DatasetDict({s: datasets.concatenate_datasets([p[s] for p in parts]) for s in splits})
    if lite_n and eval_split:
        out[eval_split] = data.lite_subset(out[eval_split], int(lite_n), lite_strata)
    return out
