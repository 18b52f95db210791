"""What lm-eval calls: the dataset (``custom_dataset``) and the score (``process_results``).

lm-eval calls ``load(**metadata, **dataset_kwargs)``; the metadata carries the task's own
keys (``lc_kind``, ``lc_lengths``, ``lc_depths``, ``lc_samples``, ``lc_needles``,
``lc_seed``, ``lc_max_gen_toks``) and every model argument, which name the tokenizer lengths are counted in.
Documents come sorted by length, then depth from deep to shallow, so consecutive prompts
share the longest haystack prefix (backends that sort by prompt keep this order anyway).
"""

from __future__ import annotations

import logging
from typing import Any

from slm_tasks.long_context.cells import NOT_APPLICABLE_PROMPT, Builder, Cell, not_applicable
from slm_tasks.long_context.haystack import HUB_CONFIG, HUB_ID, haystack
from slm_tasks.long_context.haystack import SPLIT as HAY_SPLIT
from slm_tasks.long_context.needles import KINDS, needle_set
from slm_tasks.long_context.tokenizers import LongContextError, model_tokenizer

log = logging.getLogger(__name__)
SPLIT = "test"


def _ints(value, what: str) -> list[int]:
    items = value if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split()
    try:
        return [int(float(v)) for v in items]
    except (TypeError, ValueError):
        raise LongContextError(f"long-context metadata {what} must be numbers, not {value!r}") from None


def cells(
    lc_kind: str,
    lc_lengths,
    lc_depths,
    lc_samples: int = 1,
    lc_needles: int = 3,
    lc_seed: int = 1234,
    lc_max_gen_toks: int = 32,
    slm_data_dir: str | None = None,
    hub_id: str = HUB_ID,
    hub_config: str = HUB_CONFIG,
    eval_split: str = HAY_SPLIT,
    **model_args: Any,
) -> list[Cell]:
    """Every cell of one task for the model named by ``model_args``, in serving order.

    The task's keys carry an ``lc_`` prefix: lm-eval merges every model argument into the
    same metadata, and a model's ``seed`` or ``max_gen_toks`` must not change the cells."""
    lengths, depths, samples_per_cell, needles = lc_lengths, lc_depths, lc_samples, lc_needles
    seed, max_gen_toks = lc_seed, lc_max_gen_toks
    if lc_kind not in KINDS:
        raise LongContextError(f"lc_kind must be one of {', '.join(KINDS)}, not {lc_kind!r}")
    lengths, depths = (
        sorted(set(_ints(lengths, "lengths"))),
        sorted(set(_ints(depths, "depths")), reverse=True),
    )
    if any(not 0 <= d <= 100 for d in depths) or any(n < 256 for n in lengths):
        raise LongContextError("long-context depths are percentages (0-100) and lengths at least 256 tokens")
    tok, window = model_tokenizer(model_args)
    hay = haystack(int(seed), slm_data_dir, (hub_id, hub_config, eval_split))
    runnable = [n for n in lengths if not not_applicable(n, int(max_gen_toks), window)]
    builder = Builder(tok, hay, max(runnable)) if runnable else None
    out = []
    for length in lengths:
        reason = not_applicable(length, int(max_gen_toks), window)
        for depth in depths:
            for s in range(int(samples_per_cell)):
                ns = needle_set(lc_kind, int(seed), s, int(needles), hay.corpus_lower)
                if reason:
                    out.append(
                        Cell(
                            lc_kind,
                            length,
                            depth,
                            s,
                            NOT_APPLICABLE_PROMPT,
                            list(ns.answers),
                            list(ns.names),
                            applicable=False,
                            reason=reason,
                            tokenizer=tok.name,
                        )
                    )
                else:
                    out.append(builder.build(ns, length, float(depth), s))
    skipped = sorted({c.length for c in out if not c.applicable})
    if skipped:
        log.warning(
            "long-context %s: lengths %s not applicable: %s",
            lc_kind,
            skipped,
            next(c.reason for c in out if not c.applicable),
        )
    return out


def load(**kwargs: Any):
    """``custom_dataset``: a DatasetDict with one split, ``test``, one row per cell and sample."""
    import datasets

    for key in ("lc_kind", "lc_lengths", "lc_depths"):
        if key not in kwargs:
            where = "task_configs/long_context/"
            raise LongContextError(f"a long-context task needs metadata {key} (see {where})")
    for key in ("task", "config_source", "version", "lite_n", "prompts_per_model", "fewshot_split"):
        kwargs.pop(key, None)
    docs = [c.doc() for c in cells(**kwargs)]
    return datasets.DatasetDict({SPLIT: datasets.Dataset.from_list(docs)})


def found(answer: str, output: str) -> bool:
    return answer.lower() in output.lower()


def score(doc: dict, output: str) -> dict[str, float]:
    """A cell's outcome from the greedy output: every answer string found (case-insensitive).

    Multi-needle retrieval also reports the fraction found. For reasoning, the first chain
    name the output mentions must be the answer (naming every person is no answer).
    """
    answers = list(doc["answers"])
    hits = [found(a, output) for a in answers]
    if doc["kind"] == "reasoning" and doc.get("names"):
        low = output.lower()
        named = [(low.find(n.lower()), n) for n in doc["names"] if n.lower() in low]
        hits = [bool(named) and min(named)[1] == answers[0]]
    return {"acc": float(all(hits)), "needle_recall": sum(hits) / len(hits)}


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """lm-eval's per-document metrics. A cell that is not applicable carries no ``acc`` (so it
    is never scored 0), only ``not_applicable: 1``; its reason is in the document."""
    if not doc["applicable"]:
        return {"not_applicable": 1.0}
    return {**score(doc, results[0] if results else ""), "not_applicable": 0.0}
