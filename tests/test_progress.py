"""The run's one progress bar: what its remaining time adds up, and where it stays silent."""

from __future__ import annotations

import random

import pytest

from slm_tasks.adapters import progress
from slm_tasks.adapters.generation import GenJob, generation_plan
from slm_tasks.adapters.progress import Job, RunProgress

P, D = 0.002, 0.012  # seconds per prompt token, per generated token


def gen_job(i: int, ids, max_gen=256, task="t") -> GenJob:
    return GenJob(i, tuple(ids), ["\n\n"], max_gen, False, {}, False, task)


def test_a_phase_not_yet_timed_is_named_not_guessed():
    run = RunProgress({"loglikelihood": 10, "generate_until": 5}, disable=True)
    assert run.eta() == (0.0, ["scoring", "generation"])
    with run.phase("loglikelihood", 10):
        for _ in range(3):
            run._advance("loglikelihood", 1, 2.0)
        assert run.eta() == (14.0, ["generation"])  # 7 requests left at 2 s each
        assert "left ≥ 00:14 + generation (not yet timed)" in run._postfix("loglikelihood")


def test_requests_answered_from_the_store_leave_the_plan():
    run = RunProgress({"loglikelihood": 10}, disable=True)
    run.skip("loglikelihood", 4)
    with run.phase("loglikelihood", 6):
        for _ in range(3):
            run._advance("loglikelihood", 1, 1.0)
        assert run.eta() == (3.0, [])
    run.close()


def simulate(run: RunProgress, jobs: list[tuple[Job, int]], stop_at: int) -> float:
    """Advance generation through ``jobs`` (job, tokens it generates) with a linear cost;
    the true seconds left after ``stop_at`` of them."""
    for job, out in jobs[:stop_at]:
        run._advance("generate_until", 1, P * job.prompt_tokens + D * out, job.prompt_tokens, out)
    return sum(P * j.prompt_tokens + D * out for j, out in jobs[stop_at:])


def lite_like_generations() -> list[tuple[Job, int]]:
    """The lite profile's shape: HumanEval (short prompts, limit 1,024, ~23 tokens out), MBPP,
    gsm8k (1,000-token prompts, ~55 out), minerva (shared prefix, ~76 out), in that order."""
    rng = random.Random(0)
    jobs = [(Job("humaneval", rng.randint(80, 200), 1024), rng.randint(5, 40)) for _ in range(40)]
    jobs += [(Job("mbpp", rng.randint(100, 200), 256), rng.randint(20, 90)) for _ in range(50)]
    jobs += [(Job("gsm8k", rng.randint(800, 1300), 256), rng.randint(30, 80)) for _ in range(200)]
    jobs += [(Job("minerva", rng.randint(50, 110), 256), rng.randint(40, 110)) for _ in range(200)]
    return jobs


def test_generation_time_left_follows_tokens_not_requests():
    jobs = lite_like_generations()
    per_request_error = []
    for stop_at in (60, 150, 300):
        run = RunProgress({"loglikelihood": 100, "generate_until": len(jobs)}, disable=True)
        with run.phase("loglikelihood", 100):
            run._advance("loglikelihood", 100, P * 50_000, 50_000)  # scoring measured the prefill rate
        with run.phase("generate_until", len(jobs), [j for j, _ in jobs]):
            truth = simulate(run, jobs, stop_at)
            by_tokens, untimed = run.eta()
            assert not untimed
            per_request = run.phases["generate_until"].rate() * (len(jobs) - stop_at)
            assert abs(by_tokens / truth - 1) < 0.25, (stop_at, by_tokens, truth)
            per_request_error.append(abs(per_request / truth - 1))
    # a rate per request is far off before and after the expensive gsm8k prompts; tokens are not
    assert max(per_request_error) > 0.5, per_request_error


def test_without_a_measured_prefill_rate_generation_falls_back_to_requests():
    jobs = lite_like_generations()[:20]
    run = RunProgress({"generate_until": 20}, disable=True)
    with run.phase("generate_until", 20, [j for j, _ in jobs]):
        simulate(run, jobs, 5)
        seconds_done = sum(P * job.prompt_tokens + D * out for job, out in jobs[:5])
        # the mean seconds per request so far, times the requests left
        assert run.phases["generate_until"].rate() == pytest.approx(seconds_done / 5)
        assert run.eta()[0] == run.phases["generate_until"].rate() * 15


def test_the_plan_counts_only_the_prompt_tokens_past_the_shared_prefix():
    shots = list(range(100, 400))  # a fixed few-shot prefix, 300 tokens
    units = [
        [gen_job(0, shots + [1, 2, 3])],
        [gen_job(1, shots + [1, 2, 4, 5])],
        [gen_job(2, [7, 8], max_gen=9, task="u")],
        [gen_job(3, [7, 8, 9, 10])],
    ]
    plan = generation_plan(units, stored=set())
    assert plan == [Job("t", 303, 256), Job("t", 2, 256), Job("u", 2, 9), Job("t", 2, 256)]
    # a job answered from the store is not planned, but its prompt is still what precedes the next
    assert generation_plan(units, stored={0, 2}) == [Job("t", 2, 256), Job("t", 2, 256)]


def test_a_call_outside_slm_suite_run_gets_its_own_bar():
    assert progress.current() is None
    with progress.CallBar(3, False, "slm-llamacpp generate_until") as bar:
        bar.update(1, prompt_tokens=10, out_tokens=2)
        bar.update(2)
        assert bar._bar.n == 3
