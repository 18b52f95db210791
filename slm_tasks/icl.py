"""In-context learning (ICL): the same task at 0, 1 and 5 shots; the protocol and its names.

The ``slm_icl`` group (task_configs/icl/) runs the SLM survey protocol: arc_challenge,
hellaswag, winogrande, mmlu, commonsense_qa, piqa and openbookqa, each at 0, 1 and 5
shots, as tasks named ``slm_icl_<task>_<k>shot`` (``_lite`` for the 200-doc subsets).
truthfulqa_mc2, the survey's eighth task, has no split to draw examples from other than
the one it scores, so it has no few-shot variants (see :data:`NOT_APPLICABLE`).

A leaf module (it imports nothing of the project): the config generator, the variants a
mirror can run (:mod:`slm_tasks.icl_variants`) and the gain from shots
(:mod:`slm_tasks.results.icl_gain`) all read the protocol from here.
"""

from __future__ import annotations

import re

SHOTS = (0, 1, 5)
TASKS = ("arc_challenge", "hellaswag", "winogrande", "mmlu", "commonsense_qa", "piqa", "openbookqa")
NOT_APPLICABLE = {
    "truthfulqa_mc2": (
        "truthfulqa_mc2 has one split (validation), which is the one scored, so there is nowhere "
        "to draw few-shot examples from; lm-eval's truthfulqa_mc2 pins num_fewshot: 0 (a fixed "
        "6-QA preamble is part of every prompt) and ignores --num_fewshot, so its '1-shot' and "
        "'5-shot' scores would equal its 0-shot score. Its 0-shot score is slm_truthfulqa_mc2."
    )
}
NAME = re.compile(r"^slm_icl_(?P<base>.+)_(?P<shots>\d+)shot(?P<lite>_lite)?$")


def task_name(base: str, shots: int, lite: bool = False) -> str:
    return f"slm_icl_{base}_{shots}shot" + ("_lite" if lite else "")


def parse_name(name: str) -> tuple[str, int, bool] | None:
    """``slm_icl_mmlu_5shot_lite`` -> ("mmlu", 5, True); None for other names."""
    m = NAME.match(name)
    return (m["base"], int(m["shots"]), bool(m["lite"])) if m else None
