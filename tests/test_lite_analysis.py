"""Lite-vs-full sampling error and detectable differences, checked against simulation."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _benchmark_module(name: str):
    """benchmarks/<name>.py (the folder is no package)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = sys.modules[name] = importlib.util.module_from_spec(spec)  # dataclasses look it up
    spec.loader.exec_module(module)
    return module


la = _benchmark_module("lite_analysis")


def population(N=1200, p=0.4, seed=1):
    return (np.random.default_rng(seed).random(N) < p).astype(float)


def test_fpc_standard_error_matches_the_spread_of_random_lite_subsets():
    y = population()
    e = la.task_lite_error(y, 200, task="t")
    spread = la.resample_lite_means(y, 200, reps=2500, seed=3).std()
    assert e.se == pytest.approx(spread, rel=0.07)
    # without the FPC the error would be overstated by 1/sqrt(1 - n/N)
    assert e.se == pytest.approx(y.std(ddof=1) / np.sqrt(200) * np.sqrt(1 - 200 / 1200))


def test_lite_subset_is_the_loaders_and_the_full_set_has_no_error():
    y = population(N=500)
    e = la.task_lite_error(y, 200)
    idx = la.lite_indices(500, 200)
    assert len(set(idx.tolist())) == 200 and e.lite_mean == pytest.approx(y[idx].mean())
    assert np.array_equal(idx, la.lite_indices(500, 200))  # seeded, like the loader
    whole = la.task_lite_error(y, 500)
    assert whole.se == 0 and whole.actual_diff == 0


def test_stratified_error_is_smaller_when_strata_differ_and_matches_simulation():
    rng = np.random.default_rng(7)
    strata = np.repeat(["easy", "mid", "hard"], [600, 300, 100])
    p = np.select([strata == "easy", strata == "mid"], [0.9, 0.5], 0.1)
    y = (rng.random(1000) < p).astype(float)
    st = la.task_lite_error(y, 100, strata=strata)
    srs = la.task_lite_error(y, 100)
    assert st.strata == 3 and st.se < srs.se
    assert abs(st.bias) < 0.01
    # simulate the stratified draw with the same per-stratum sizes
    idx = la.lite_indices(1000, 100, strata)
    sizes = {h: int((strata[idx] == h).sum()) for h in ("easy", "mid", "hard")}
    total = sum(
        sizes[h] * la.resample_lite_means(y[strata == h], sizes[h], reps=3000, seed=i) for i, h in enumerate(sizes)
    )
    assert st.se == pytest.approx(np.std(total / 100), rel=0.08)


def test_domain_error_combines_independent_task_errors():
    parts = [
        la.task_lite_error(population(N, p, s), 200, task=f"t{s}")
        for N, p, s in ((500, 0.3, 1), (1200, 0.6, 2), (3000, 0.5, 3))
    ]
    d = la.domain_lite_error(parts)
    assert d.full_mean == pytest.approx(np.mean([x.full_mean for x in parts]))
    assert d.se == pytest.approx(np.sqrt(sum(x.se**2 for x in parts)) / 3)
    assert d.se < min(x.se for x in parts)  # averaging tasks shrinks the error
    table = la.lite_table(parts, d)
    assert table.count("\n") == 2 + 3 and "domain mean" in table


def test_unpaired_mdd_gives_80_percent_power_in_simulation():
    n, p = 200, 0.5
    mdd = la.mdd_unpaired(p, n)
    assert mdd == pytest.approx(2.8016 * np.sqrt(2 * 0.25 / 200), rel=1e-3)
    rng = np.random.default_rng(0)
    pa, pb = p + mdd / 2, p - mdd / 2
    a = rng.binomial(n, pa, 20000) / n
    b = rng.binomial(n, pb, 20000) / n
    se = np.sqrt(a * (1 - a) / n + b * (1 - b) / n)
    power = np.mean(np.abs(a - b) / se > 1.96)
    assert power == pytest.approx(0.80, abs=0.03)


def test_paired_mdd_gives_80_percent_power_in_simulation():
    n, disc = 200, 0.2
    mdd = la.mdd_paired(disc, n)
    rng = np.random.default_rng(1)
    # per doc: A only right with prob (disc+mdd)/2, B only right with (disc-mdd)/2
    u = rng.random((20000, n))
    d = np.where(u < (disc + mdd) / 2, 1.0, np.where(u < disc, -1.0, 0.0))
    z = d.mean(1) / (d.std(1, ddof=1) / np.sqrt(n))
    assert np.mean(np.abs(z) > 1.96) == pytest.approx(0.80, abs=0.04)
    assert mdd < la.mdd_unpaired(0.5, n)  # pairing helps when models agree on most docs


def test_compare_models_on_per_doc_results():
    rng = np.random.default_rng(2)
    a = population(N=1000, p=0.5, seed=5)
    b = a.copy()
    flip = rng.random(1000) < 0.15  # the models disagree on ~15% of docs
    b[flip] = 1 - b[flip]
    c = la.compare_models(a, b, 200, task="t")
    assert c.discordance == pytest.approx(flip.mean())
    assert c.diff_full == pytest.approx(a.mean() - b.mean())
    assert c.mdd_paired_lite < c.mdd_unpaired_lite
    assert c.mdd_paired_full < c.mdd_paired_lite  # the full split resolves smaller gaps
    with pytest.raises(ValueError, match="different docs"):
        la.compare_models(a, b[:-1])


def test_scores_from_samples_needs_a_full_run():
    rows = [{"doc_id": i, "acc": float(i % 2), "filter": "none"} for i in (2, 0, 1)]
    assert la.scores_from_samples(rows).tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="no --limit"):
        la.scores_from_samples(rows[:2])


def test_analyse_samples_of_a_full_run():
    a, b = population(N=400, seed=8), population(N=600, p=0.7, seed=9)
    subjects = ["x"] * 300 + ["y"] * 300
    samples = {
        "slm_a": [{"doc_id": i, "filter": "none", "acc": v} for i, v in enumerate(a)],
        "slm_mmlu": [
            {"doc_id": i, "filter": "none", "acc": v, "doc": {"subject": s}}
            for i, (v, s) in enumerate(zip(b, subjects))
        ],
    }
    errors, domain = la.analyse_samples(samples, 200)
    assert [e.task for e in errors] == ["slm_a", "slm_mmlu"]
    assert errors[0].strata is None and errors[1].strata == 2
    idx = la.lite_indices(600, 200, subjects)
    assert errors[1].lite_mean == pytest.approx(b[idx].mean())
    assert domain.full_mean == pytest.approx((a.mean() + b.mean()) / 2)


def test_lite_indices_are_the_docs_the_lite_tasks_score():
    """The analysis uses the very subset the loader keeps (same function, same seed)."""
    import os
    from pathlib import Path

    from slm_tasks import data

    hub = Path(os.environ.get("SLM_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "hub")
    if not (hub / "allenai/openbookqa").is_dir():
        pytest.skip(f"offline mirror not found at {hub} (set SLM_DATA_DIR)")
    kw = dict(hub_id="allenai/openbookqa", hub_config="main", eval_split="test", slm_data_dir=str(hub))
    full, lite = data.load(**kw)["test"]["id"], data.load(lite_n=200, **kw)["test"]["id"]
    assert [full[i] for i in la.lite_indices(len(full), 200)] == lite


def test_estimate_from_lite_matches_the_spread_of_lite_means():
    """The SE estimated from one lite subset's own docs is close to the true spread of lite
    means over many subsets of the same full split (and shrinks to 0 when n = N)."""
    rng = np.random.default_rng(3)
    full = (rng.random(2000) < 0.3).astype(float)
    true_sd = la.resample_lite_means(full, n=200, reps=4000, seed=1).std()
    estimates = [la.estimate_from_lite(full[rng.choice(2000, 200, replace=False)], 2000).se for _ in range(50)]
    assert abs(np.mean(estimates) / true_sd - 1) < 0.1
    assert la.estimate_from_lite(full, 2000).se == 0.0
    with pytest.raises(ValueError, match="N >= n"):
        la.estimate_from_lite(full, 100)


def test_estimate_table_adds_domain_means():
    a = la.estimate_from_lite([1, 0, 1, 1] * 50, 1000, task="a")
    b = la.estimate_from_lite([0, 0, 0, 1] * 50, 500, task="b")
    table = la.estimate_table([a, b], {"both": ["a", "b"]})
    assert "| a | 1000 | 200 | 0.750 |" in table
    se = (a.se**2 + b.se**2) ** 0.5 / 2
    assert f"| **both** (2) | | | 0.500 | {se:.3f} |" in table


def test_lite_precision_reads_domains_and_metrics_from_the_lite_spec():
    """benchmarks/lite_precision.py takes the domains and metrics of the one score definition."""
    import json

    from slm_tasks.leaderboards.spec import load_spec

    root = BENCHMARKS.parent
    lp = _benchmark_module("lite_precision")
    domains, entries = lp.spec_domains(load_spec("lite"))
    assert list(domains) == ["commonsense", "problem solving", "math", "coding", "long context"]
    assert domains["math"] == ["gsm8k", "minerva_math"] and "slm_icl_mmlu_5shot_lite" not in entries
    (results,) = (root / "tests/fixtures/results/llamacpp-limit30/smollm2-135m").glob("results_*.json")
    samples = lp.load_samples(results)
    assert sorted(samples) == ["slm_arc_easy_lite", "slm_boolq_lite"]
    metric, values = lp.per_doc(samples["slm_boolq_lite"], entries["slm_boolq_lite"])
    reported = json.loads(results.read_text())["results"]["slm_boolq_lite"]["acc,none"]
    assert metric == "acc,none" and len(values) == 30 and np.mean(values) == pytest.approx(reported)
