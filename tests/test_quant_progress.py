"""One progress bar over a quantisation sweep: each format's run shrinks only its own share of
the plan (``RunProgress.reserved``), so the total and the time left cover the whole sweep."""

from __future__ import annotations

from slm_tasks.adapters.progress import RunProgress


def test_later_formats_stay_in_the_plan():
    bar = RunProgress({"loglikelihood": 30}, disable=True)
    bar.reserved = {"loglikelihood": 20}  # three formats of 10 requests; two still to come
    with bar.phase("loglikelihood", 10) as ph:  # the first format's call carries its 10
        assert bar.phases["loglikelihood"].total == 30
        ph.update(10)
    bar.release({"loglikelihood": 10})
    bar.skip("loglikelihood", 2)  # the store answers 2 of the second format's requests
    with bar.phase("loglikelihood", 8) as ph:
        assert bar.phases["loglikelihood"].total == 28
        ph.update(8)
    bar.release({"loglikelihood": 10})
    with bar.phase("loglikelihood", 10) as ph:
        ph.update(10)
    p = bar.phases["loglikelihood"]
    assert (p.done, p.total) == (28, 28)
    bar.close()


def test_without_reserved_requests_a_call_shrinks_the_plan_as_before():
    bar = RunProgress({"loglikelihood": 30}, disable=True)
    with bar.phase("loglikelihood", 10):
        assert bar.phases["loglikelihood"].total == 10
    bar.close()
