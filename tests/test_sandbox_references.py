"""The benchmarks' own reference solutions pass in the sandbox, and wrong ones fail.

Reads the offline mirror through the project's loader (``SLM_DATA_DIR``, default
``../shared/hub``). Programs and tests are built exactly as the coding tasks build them
(slm_tasks.code_eval), and run in parallel: wrong ones with the default limits, the references with
a longer timeout.
"""

import os
from pathlib import Path

import pytest

from slm_tasks import code_eval
from slm_tasks.sandbox import Limits, Sandbox

HUB = Path(os.environ.get("SLM_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "hub")

# MBPP test-split items whose reference solution fails, and why.
MBPP_KNOWN_BROKEN = {
    # Its tests need `test_setup_code` (a tree built from Node objects), which lm-eval's
    # mbpp task never runs; we keep lm-eval's programs, so this reference fails there too.
    367: "NameError: name 'root' is not defined",
}
# What a reference needs on a busy machine, not the default 10 s: these tests judge the harness,
# never the speed (MBPP 123, amicable_numbers_sum(9999), takes 10-12 s on an idle 2-core machine).
PATIENT_S = 120


@pytest.fixture(scope="module")
def mirror():
    if not (HUB / "manifest.json").is_file():
        pytest.skip(f"offline mirror not found at {HUB} (set SLM_DATA_DIR)")
    return str(HUB)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    return Sandbox(tmp_root=str(tmp_path_factory.mktemp("sbx")))


@pytest.fixture(scope="module")
def patient(tmp_path_factory):
    """For programs that must pass: a slow machine makes them late, never wrong."""
    return Sandbox(limits=Limits(timeout_s=PATIENT_S), tmp_root=str(tmp_path_factory.mktemp("sbx")))


def _load(mirror, hub_id, config):
    from slm_tasks.data import load

    return list(load(hub_id, config, eval_split="test", slm_data_dir=mirror)["test"])


def test_all_164_humaneval_canonical_solutions_pass(mirror, patient):
    docs = _load(mirror, "openai/openai_humaneval", "openai_humaneval")
    assert len(docs) == 164
    jobs = [
        (d["prompt"] + d["canonical_solution"], code_eval.humaneval_tests(d), code_eval.humaneval_exposed(d))
        for d in docs
    ]
    results = patient.run_many(jobs)
    failed = {d["task_id"]: r.reason for d, r in zip(docs, results) if not r.passed}
    assert failed == {}


def test_humaneval_stubs_fail(mirror, sandbox):
    docs = _load(mirror, "openai/openai_humaneval", "openai_humaneval")
    jobs = [
        (d["prompt"] + "    return None\n", code_eval.humaneval_tests(d), code_eval.humaneval_exposed(d)) for d in docs
    ]
    results = sandbox.run_many(jobs)
    passed = [d["task_id"] for d, r in zip(docs, results) if r.passed]
    assert passed == []
    assert all(r.status == "failed" for r in results)


def test_mbpp_reference_solutions_pass_except_the_known_broken(mirror, patient):
    docs = _load(mirror, "google-research-datasets/mbpp", "full")
    assert len(docs) == 500
    jobs = [(d["code"], code_eval.mbpp_tests(d), code_eval.mbpp_exposed(d)) for d in docs]
    results = patient.run_many(jobs)
    failed = {d["task_id"]: r.reason for d, r in zip(docs, results) if not r.passed}
    unexpected = {k: v for k, v in failed.items() if k not in MBPP_KNOWN_BROKEN}
    assert unexpected == {}
    assert MBPP_KNOWN_BROKEN[367] in failed[367]


def test_mbpp_solutions_paired_with_another_tasks_tests_fail(mirror, sandbox):
    docs = _load(mirror, "google-research-datasets/mbpp", "full")[::10]
    jobs = [(d["code"], code_eval.mbpp_tests(o), code_eval.mbpp_exposed(o)) for d, o in zip(docs, docs[1:] + docs[:1])]
    results = sandbox.run_many(jobs)
    assert [r.passed for r in results] == [False] * len(docs)
