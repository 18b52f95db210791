"""Scoring hooks for the coding tasks (slm_humaneval, slm_mbpp): pass@k in the sandbox.

lm-eval's own humaneval/mbpp helpers call ``evaluate.load("code_eval")`` at import (it
needs the Hugging Face hub) and run candidates in threads of the evaluating process. The
pieces our YAMLs need are re-implemented here and execution goes through
:mod:`slm_tasks.sandbox`:

* filters (``create_test``): the same predictions as lm-eval's (HumanEval: prompt +
  completion; MBPP: the completion), and they also start every program of the task in
  the sandbox pool at once, so scoring a task runs in parallel;
* ``process_results_*``: pass@k per document (unbiased estimator, Chen et al. 2021) and
  the sandbox's reason for every candidate (``"passed"``, ``"timeout"``,
  ``"failed: AssertionError ..."``) under ``sandbox`` in the logged samples;
* aggregations: ``pass@1`` is a mean (lm-eval gives its stderr); ``sandbox`` aggregates to
  the share of candidates the sandbox had to stop (timeout, memory, signal, blocked call).

Limits come from :class:`slm_tasks.sandbox.Limits`, overridable with the environment
variables ``SLM_SANDBOX_TIMEOUT_S``, ``SLM_SANDBOX_MEMORY_MB`` and ``SLM_SANDBOX_WORKERS``;
``SLM_SANDBOX_PYTHON`` picks the interpreter that runs the programs (default: this one).
"""

from __future__ import annotations

import ast
import os
import threading
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from slm_tasks.sandbox import ExecResult, Limits, Sandbox

# pass@k reported for every k in this list that is <= the number of samples per problem.
PASS_AT_K = (1, 10, 100)
STOPPED = ("timeout", "memory", "killed", "blocked")


try:  # the project's error family, where present
    from slm_tasks.errors import SLMError as _ErrorBase
except ImportError:  # pragma: no cover
    _ErrorBase = RuntimeError


class CodeEvalError(_ErrorBase):
    """Bad sandbox settings for the coding tasks; the message names the variable."""


# -- pass@k ------------------------------------------------------------------------------
def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct (Chen et al., 2021):
    ``1 - C(n-c, k) / C(n, k)``, computed as a stable product."""
    if not 0 < k <= n:
        raise ValueError(f"pass@{k} needs 1 <= k <= n (n={n} samples)")
    if not 0 <= c <= n:
        raise ValueError(f"c={c} correct samples out of n={n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_at_k_scores(passed: Sequence[bool], ks: Sequence[int] = PASS_AT_K) -> dict[str, float]:
    n, c = len(passed), int(sum(bool(p) for p in passed))
    return {f"pass@{k}": pass_at_k(n, c, k) for k in ks if k <= n}


# -- programs and tests, as lm-eval builds them -------------------------------------------
def humaneval_tests(doc: dict) -> str:
    """lm-eval's humaneval target: ``{{test}}\\ncheck({{entry_point}})``."""
    return f"{doc['test']}\ncheck({doc['entry_point']})"


def mbpp_tests(doc: dict) -> str:
    """lm-eval's mbpp target: the three asserts of ``test_list``, one per line."""
    tl = doc["test_list"]
    return f"{tl[0]}\n{tl[1]}\n{tl[2]}"


def humaneval_exposed(doc: dict) -> tuple[str, ...]:
    """Names the tests may take from the program even if they shadow a builtin."""
    return (doc["entry_point"],)


def mbpp_exposed(doc: dict) -> tuple[str, ...]:
    """The top-level functions and classes of the reference solution: MBPP's tests call
    them by name, and a few shadow builtins (task 126 tests ``sum(a, b)``)."""
    try:
        with warnings.catch_warnings():  # old references use invalid escapes like "\w"
            warnings.simplefilter("ignore")
            tree = ast.parse(doc.get("code") or "")
    except SyntaxError:
        return ()
    return tuple(n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)))


def build_predictions(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """HumanEval ``create_test`` filter: prompt + completion, as lm-eval's filter."""
    out = [[doc["prompt"] + r for r in resp] for resp, doc in zip(resps, docs)]
    _prefetch(out, [(humaneval_tests(d), humaneval_exposed(d)) for d in docs])
    return out


def mbpp_predictions(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """MBPP ``create_test`` filter: the completion itself (every sample, not only the
    first, so that pass@k works with ``repeats``)."""
    out = [list(resp) for resp in resps]
    _prefetch(out, [(mbpp_tests(d), mbpp_exposed(d)) for d in docs])
    return out


def process_results_humaneval(doc: dict, results: list) -> dict[str, Any]:
    return _score(_candidates(results), humaneval_tests(doc), humaneval_exposed(doc))


def process_results_mbpp(doc: dict, results: list) -> dict[str, Any]:
    return _score(_candidates(results), mbpp_tests(doc), mbpp_exposed(doc))


def stopped_share(items: list[list[str]]) -> float:
    """Aggregation of ``sandbox``: the share of candidates stopped by the sandbox."""
    reasons = [r for per_doc in items for r in per_doc]
    if not reasons:
        return 0.0
    return sum(r.split(":")[0] in STOPPED for r in reasons) / len(reasons)


def mbpp_fewshot_samples() -> list[dict]:
    """The three fixed MBPP prompt examples (task ids 2, 3, 4) lm-eval's mbpp uses."""
    return [
        {
            "task_id": 2,
            "text": "Write a function to find the similar elements from the given two tuple lists.",
            "code": "def similar_elements(test_tup1, test_tup2):\r\n  res = tuple(set(test_tup1) & set(test_tup2))\r\n  return (res) ",  # noqa: E501
            "test_list": [
                "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",
                "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)",
                "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)",
            ],
            "is_fewshot": True,
        },
        {
            "task_id": 3,
            "text": "Write a python function to identify non-prime numbers.",
            "code": "import math\r\ndef is_not_prime(n):\r\n    result = False\r\n    for i in range(2,int(math.sqrt(n)) + 1):\r\n        if n % i == 0:\r\n            result = True\r\n    return result",  # noqa: E501
            "test_list": [
                "assert is_not_prime(2) == False",
                "assert is_not_prime(10) == True",
                "assert is_not_prime(35) == True",
            ],
            "is_fewshot": True,
        },
        {
            "task_id": 4,
            "text": "Write a function to find the largest integers from a given list of numbers using heap queue algorithm.",  # noqa: E501
            "code": "import heapq as hq\r\ndef heap_queue_largest(nums,n):\r\n  largest_nums = hq.nlargest(n, nums)\r\n  return largest_nums",  # noqa: E501
            "test_list": [
                "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65] ",
                "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75] ",
                "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)==[85, 75, 65, 58, 35]",
            ],
            "is_fewshot": True,
        },
    ]


# -- execution ---------------------------------------------------------------------------
_sandbox: Sandbox | None = None
_lock = threading.Lock()
# (program, tests, exposed) -> [result, uses left]: filled by the filters, drained by scoring.
_prefetched: dict[tuple, list] = {}


def sandbox() -> Sandbox:
    """The shared sandbox for the coding tasks (limits from the environment)."""
    global _sandbox
    with _lock:
        if _sandbox is None:
            _sandbox = Sandbox(
                limits=_limits_from_env(),
                workers=_env_number("SLM_SANDBOX_WORKERS", int),
                python=os.environ.get("SLM_SANDBOX_PYTHON") or None,
            )
        return _sandbox


def _env_number(name: str, kind):
    raw = os.environ.get(name)
    if raw in (None, ""):
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise CodeEvalError(f"{name}={raw!r} is not a number; unset it or give e.g. {name}=10") from None
    if value <= 0:
        raise CodeEvalError(f"{name}={raw!r} must be positive")
    return value


def _limits_from_env() -> Limits:
    kw = {}
    timeout = _env_number("SLM_SANDBOX_TIMEOUT_S", float)
    if timeout is not None:
        kw["timeout_s"] = timeout
    mem = _env_number("SLM_SANDBOX_MEMORY_MB", int)
    if mem is not None:
        kw["memory_bytes"] = mem << 20
    return Limits(**kw)


def _prefetch(programs: list[list[str]], tests: list[tuple[str, tuple]]) -> None:
    jobs = [(p, t, e) for progs, (t, e) in zip(programs, tests) for p in progs]
    if not jobs:
        return
    uses = Counter(jobs)
    unique = list(uses)
    for job, result in zip(unique, sandbox().run_many(unique)):
        with _lock:
            _prefetched[job] = [result, uses[job]]


def _run(program: str, tests: str, exposed: tuple) -> ExecResult:
    key = (program, tests, exposed)
    with _lock:
        entry = _prefetched.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] <= 0:
                del _prefetched[key]
            return entry[0]
    return sandbox().run(program, tests, exposed)


def _candidates(results: list) -> list[str]:
    # One generate_until instance per doc; its filtered response is the list of samples
    # (our filters) or a single string (lm-eval's default take_first filter).
    resp = results[0]
    return [resp] if isinstance(resp, str) else list(resp)


def _score(programs: list[str], tests: str, exposed: tuple) -> dict[str, Any]:
    outcomes = [_run(p, tests, exposed) for p in programs]
    scores: dict[str, Any] = pass_at_k_scores([o.passed for o in outcomes])
    scores["sandbox"] = [o.reason for o in outcomes]
    return scores
