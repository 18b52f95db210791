"""The release gate: paired per-document tests, margins, budgets, reports and exit codes.

Every verdict is one of passed (shown within the bound), failed (shown beyond it) and not shown
(the data cannot tell), built here from real statistics on hand-made runs."""

from __future__ import annotations

import importlib.util
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from slm_tasks.adapters.bench import stats as bench_stats
from slm_tasks.cli import main
from slm_tasks.leaderboards import GateError, gate, gate_stats
from slm_tasks.leaderboards.release_gate import load_policy
from slm_tasks.results import stats


def _synthetic():
    spec = importlib.util.spec_from_file_location(
        "lb_synthetic", Path(__file__).with_name("test_leaderboard_synthetic.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


synth = _synthetic()
SPEC = {
    "schema": "slm-suite.board-spec/1",
    "name": "t",
    "domains": [
        {"name": "commonsense", "tasks": [{"task": "t_a"}, {"task": "t_b"}]},
        {"name": "math", "tasks": [{"task": "t_m"}]},
    ],
}


def policy(**kw) -> dict:
    return {"spec": "", "alpha": 0.05, "margins": {"default": 0.0}, **kw}


def paired(both: int, base_only: int, cand_only: int, neither: int) -> tuple[list[float], list[float]]:
    """Per-doc outcomes of two models with the given agreement table."""
    base = [1.0] * both + [1.0] * base_only + [0.0] * cand_only + [0.0] * neither
    cand = [1.0] * both + [0.0] * base_only + [1.0] * cand_only + [0.0] * neither
    return base, cand


def write_pair(tmp_path, tasks_base: dict, tasks_cand: dict, **kw) -> tuple[Path, Path]:
    b = synth.make_run(tmp_path / "base", "base-model", tasks_base, **kw.get("base", {}))
    c = synth.make_run(tmp_path / "cand", "cand-model", tasks_cand, **kw.get("cand", {}))
    return b, c


@pytest.fixture(autouse=True)
def small_spec(monkeypatch):
    # the gate reads the task -> domain/metric map from a board spec; use a tiny one
    import slm_tasks.leaderboards.release_gate as g

    monkeypatch.setattr(
        g,
        "load_spec",
        lambda name: __import__("slm_tasks.leaderboards.spec", fromlist=["parse_spec"]).parse_spec(SPEC, "test spec"),
    )


# ---- the statistics ----------------------------------------------------------------------------


def test_exact_mcnemar_is_the_binomial_tail_on_discordant_pairs():
    base, cand = (np.array(x) for x in paired(50, 10, 2, 8))
    r = stats.mcnemar_regression(base, cand, margin=0.0, level=0.95)
    tail = sum(math.comb(12, k) for k in range(10, 13)) / 2**12  # P(X >= 10), X ~ Bin(12, 1/2)
    assert r.p_value == pytest.approx(tail)
    assert (r.base_only, r.cand_only, r.n) == (10, 2, 70)
    assert r.diff == pytest.approx((2 - 10) / 70) and r.low < r.diff < r.high


def test_margin_shifts_the_null_and_can_make_a_drop_acceptable():
    base, cand = (np.array(x) for x in paired(300, 12, 0, 88))
    strict = stats.mcnemar_regression(base, cand, 0.0, 0.95).p_value
    lenient = stats.mcnemar_regression(base, cand, 0.01, 0.95).p_value
    tolerant = stats.mcnemar_regression(base, cand, 0.05, 0.95).p_value  # 3-point drop < 5-point margin
    assert strict < lenient < tolerant == 1.0


def test_holm_step_down():
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5]) == [0.5]


def test_wilson_at_the_extremes():
    lo, hi = stats.wilson(0, 20)
    assert lo == 0.0 and 0.1 < hi < 0.2
    lo, hi = stats.wilson(20, 20)
    assert hi == 1.0 and 0.8 < lo < 0.9


# ---- the gate on constructed runs ----------------------------------------------------------------


def test_paired_test_catches_a_regression_the_unpaired_test_misses(tmp_path):
    """lm-eval's comparison script tests the two scores as independent samples (lm-eval #3831).
    Models that agree on most documents make that test blind to a consistent per-doc drop."""
    base, cand = paired(both=300, base_only=20, cand_only=2, neither=78)  # 80.0% -> 75.5%
    b, c = write_pair(tmp_path, {"t_a": base}, {"t_a": cand})
    result = gate(b, c, policy())
    (check,) = result.checks
    assert check.method == "exact McNemar" and check.discordant == {"baseline_only": 20, "candidate_only": 2}
    assert check.p_holm < 0.05 and not check.passed and result.exit_code == 1
    assert check.p_unpaired > 0.05  # the unpaired z-test from the two stderrs sees nothing
    assert check.observed == pytest.approx(-18 / 400)


def test_large_identical_runs_pass_and_small_ones_are_not_shown(tmp_path):
    perfect = synth.outcomes(400, 400)
    b, c = write_pair(
        tmp_path, {"t_a": perfect, "t_b": synth.outcomes(400, 0)}, {"t_a": perfect, "t_b": synth.outcomes(400, 0)}
    )
    result = gate(b, c, policy(margins={"default": 0.02}))
    assert result.passed and result.exit_code == 0 and result.verdict == "passed"
    assert all(ch.p_value == 1.0 and ch.observed == 0 and ch.status == "pass" for ch in result.checks)
    # no discordant pair in 400 documents still leaves about a point of doubt (Tango), not zero
    assert all(-0.02 < ch.low < -0.005 for ch in result.checks)
    # with margin 0 non-inferiority needs a candidate shown better: identical runs cannot show it
    result = gate(b, c, policy())
    assert result.verdict == "not shown" and result.exit_code == 3 and not result.failures
    # the same identical outcomes on 30 documents: the margin of 2 points cannot be shown
    b, c = write_pair(tmp_path / "small", {"t_a": synth.outcomes(30, 20)}, {"t_a": synth.outcomes(30, 20)})
    (check,) = gate(b, c, policy(margins={"default": 0.02})).checks
    assert check.status == "not shown" and check.low < -0.05 and "30 documents" in check.reason


def test_a_33_point_drop_on_3_documents_is_not_shown_never_passed(tmp_path, capsys):
    b, c = write_pair(tmp_path, {"t_a": [1.0, 1.0, 0.0]}, {"t_a": [1.0, 0.0, 0.0]})
    res = gate(b, c, policy(margins={"default": 0.02}))
    (check,) = res.checks
    assert check.observed == pytest.approx(-1 / 3) and check.p_holm > 0.05  # no regression shown either
    assert check.status == "not shown" and not check.non_inferiority_shown and res.exit_code == 3
    assert check.low < -0.5 and "not shown" in check.message
    pol = tmp_path / "policy.yaml"
    pol.write_text("schema: slm-suite.gate-policy/1\nspec: t\nmargins: {default: 0.02}\n")
    code = main(
        ["gate", "--baseline", str(b), "--candidate", str(c), "--policy", str(pol), "--out", str(tmp_path / "r")]
    )
    assert code == 3
    md = (tmp_path / "r" / "gate.md").read_text()
    assert "⚠️ **Gate not shown**" in md and "exit code 3" in md and "✅" not in md
    assert "Gate passed" not in capsys.readouterr().out
    suite = ET.parse(tmp_path / "r" / "gate.junit.xml").getroot().find("testsuite")
    failure = suite.find("testcase/failure")
    assert failure.get("type") == "not-shown" and suite.get("failures") == "1"
    assert json.loads((tmp_path / "r" / "gate.json").read_text())["verdict"] == "not shown"


def test_holm_correction_across_tasks_and_domain_margins(tmp_path):
    # each task alone would fail at alpha 0.05 (p ~ 0.03), not after Holm over three tasks
    base, cand = paired(200, 9, 2, 89)
    b, c = write_pair(tmp_path, {"t_a": base, "t_b": base, "t_m": base}, {"t_a": cand, "t_b": cand, "t_m": cand})
    res = gate(b, c, policy())
    assert all(ch.p_value < 0.05 for ch in res.checks) and not res.failures
    assert res.verdict == "not shown"  # a 2.3-point drop is no proof of non-inferiority at margin 0
    assert all(ch.p_holm == pytest.approx(min(1, 3 * ch.p_value)) for ch in res.checks)
    # a larger drop in every task: the math domain's margin tolerates it, commonsense does not
    base, cand = paired(200, 16, 0, 84)
    b, c = write_pair(tmp_path / "2", {"t_a": base, "t_m": base}, {"t_a": cand, "t_m": cand})
    res = gate(b, c, policy(margins={"default": 0.0, "domains": {"math": 0.1}}))
    verdict = {ch.name.split()[0]: ch.passed for ch in res.checks}
    assert verdict == {"t_a": False, "t_m": True}
    assert {ch.name.split()[0]: ch.margin for ch in res.checks} == {"t_a": 0.0, "t_m": 0.1}


def test_non_binary_metrics_use_the_paired_bootstrap(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.9, 150)
    cand = np.clip(base - 0.05 + rng.normal(0, 0.02, 150), 0, 1)  # consistently 5 points lower
    b, c = write_pair(tmp_path, {"t_a": base.tolist()}, {"t_a": cand.tolist()})
    (check,) = gate(b, c, policy()).checks
    assert check.method == "paired bootstrap" and not check.passed
    assert check.high < 0 and check.observed == pytest.approx(float((cand - base).mean()))
    (check,) = gate(b, c, policy(margins={"default": 0.10})).checks
    assert check.passed and check.non_inferiority_shown
    # the same consistent drop on 20 documents: too few for the bootstrap to show anything
    b, c = write_pair(tmp_path / "few", {"t_a": base[:20].tolist()}, {"t_a": cand[:20].tolist()})
    (check,) = gate(b, c, policy(margins={"default": 0.10})).checks
    assert check.status == "not shown" and "too few for the bootstrap" in check.reason


def test_budgets_fail_with_the_numbers_and_missing_costs_follow_the_policy(tmp_path):
    same = synth.outcomes(50, 40)
    b, c = write_pair(
        tmp_path,
        {"t_a": same},
        {"t_a": same},
        base={"cost": synth.cost_record("base-model", 10.0, 500_000_000)},
        cand={"cost": synth.cost_record("cand-model", 12.0, 400_000_000)},
    )
    res = gate(
        b,
        c,
        policy(budgets={"decode_ms_per_token": {"max_increase": 0.10, "max": 50}, "peak_memory_bytes": {"max": 1e9}}),
    )
    by = {ch.name: ch for ch in res.checks}
    assert not by["decode_ms_per_token max_increase"].passed
    assert by["decode_ms_per_token max_increase"].limit == pytest.approx(11.0)
    assert (
        "12 ms/token" in by["decode_ms_per_token max_increase"].message
        and "+20.0%" in by["decode_ms_per_token max_increase"].message
    )
    assert by["decode_ms_per_token max"].passed and by["peak_memory_bytes max"].passed
    assert res.exit_code == 1
    # energy is null in the records: fails by default, skipped on request
    res = gate(b, c, policy(budgets={"energy_per_token_j": {"max": 1.0}}))
    assert not res.passed and "no measured energy_per_token_j" in res.failures[0].message
    res = gate(b, c, policy(budgets={"energy_per_token_j": {"max": 1.0}, "missing": "skip"}))
    assert [ch.status for ch in res.checks if ch.kind == "budget"] == ["skipped"] and not res.failures
    # run figures without spread: the verdict says it rests on one figure
    assert by["decode_ms_per_token max_increase"].basis == "one figure"
    assert "based on one figure" in by["decode_ms_per_token max_increase"].message


def test_reports_markdown_json_junit(tmp_path):
    base, cand = paired(300, 20, 2, 78)
    b, c = write_pair(tmp_path, {"t_a": base, "t_b": base}, {"t_a": cand, "t_b": base})
    out = tmp_path / "report"
    res = gate(b, c, policy(), out=out)
    md = (out / "gate.md").read_text()
    assert "❌ **Gate failed**: 1 of 2 checks failed (exit code 1)" in md
    assert "t\\_a acc,none: regressed beyond the margin: difference -4.5 points" in md
    assert "margin 0.0 points" in md and "95% CI \\[" in md and "`t_b acc,none`" in md
    doc = json.loads((out / "gate.json").read_text())
    assert doc["schema"] == "slm-suite.gate-result/1" and doc["exit_code"] == 1 and doc["verdict"] == "failed"
    assert [c["status"] for c in doc["checks"]] == ["fail", "not shown"]  # identical t_b, margin 0
    assert [c["passed"] for c in doc["checks"]] == [False, False]
    suite = ET.parse(out / "gate.junit.xml").getroot().find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "2"
    failure = suite.find("testcase[@name='t_a acc,none']/failure")
    assert failure is not None and "difference -4.5 points" in failure.get("message")
    assert failure.get("type") == "accuracy-regression"
    assert suite.find("testcase[@name='t_b acc,none']/failure").get("type") == "not-shown"
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["verdict"] == "failed" and props["exit_code"] == "1"
    # no absolute local path in any report: file names and digests
    for name in ("gate.md", "gate.json", "gate.junit.xml"):
        assert str(tmp_path) not in (out / name).read_text()
    (first,) = doc["baseline"]["files"]
    assert first["file"].endswith(b.name) and len(first["sha256"]) == 64
    assert res.to_markdown() == md


def test_all_means_the_tasks_of_the_overall_and_icl_variants_only_when_named(tmp_path, monkeypatch):
    import slm_tasks.leaderboards.release_gate as g
    from slm_tasks.leaderboards.spec import parse_spec

    spec = dict(SPEC, icl={"match": "slm_icl_*shot", "metric": "acc,none"})
    monkeypatch.setattr(g, "load_spec", lambda name: parse_spec(spec, "test spec"))
    base, cand = paired(300, 20, 2, 78)
    b, c = write_pair(tmp_path, {"t_a": base, "slm_icl_mmlu_5shot": base}, {"t_a": base, "slm_icl_mmlu_5shot": cand})
    assert [ch.name for ch in gate(b, c, policy()).checks] == ["t_a acc,none"]
    named = gate(b, c, policy(tasks=["t_a", "slm_icl_mmlu_5shot"]))
    assert [ch.name for ch in named.checks] == ["t_a acc,none", "slm_icl_mmlu_5shot acc,none"]
    assert not named.passed and named.failures[0].margin == 0.0  # no domain: the default margin


# ---- budgets against the runs' spread --------------------------------------------------------------


def bench_record(name: str, decode_runs: list[float], peak: int = 400_000_000) -> dict:
    """A cost record whose bench kept every run's decode figure (as adapters/bench.py does)."""
    rec = synth.cost_record(name, None, peak)
    rec["bench"] = {"runs": len(decode_runs), "tg_ms_per_token": bench_stats(decode_runs)}
    return rec


def budget_gate(tmp_path, base_runs, cand_runs, budgets):
    same = synth.outcomes(400, 300)
    b, c = write_pair(
        tmp_path,
        {"t_a": same},
        {"t_a": same},
        base={"cost": bench_record("base-model", base_runs)},
        cand={"cost": bench_record("cand-model", cand_runs)},
    )
    res = gate(b, c, policy(margins={"default": 0.02}, budgets=budgets))
    return res, {ch.name: ch for ch in res.checks if ch.kind == "budget"}


@pytest.mark.parametrize(
    "base_runs, cand_runs, status",
    [
        ([5.0, 10.0, 20.0], [6.0, 11.0, 19.0], "not shown"),  # several-fold spread: cannot tell
        ([10.0], [10.5], "not shown"),  # one run per side: no spread known
        ([10.0, 10.1, 10.2], [10.05, 10.15, 10.1], "pass"),  # tight, every run within +10%
        ([10.0, 10.1, 10.2], [13.0, 13.1, 13.2], "fail"),  # every candidate run 27% slower
        ([10.0, 10.1, 10.2], [10.5, 11.5, 10.7], "not shown"),  # +6%..+15%: straddles +10%
    ],
)
def test_relative_budget_is_judged_against_the_spread_of_the_runs(tmp_path, base_runs, cand_runs, status):
    res, by = budget_gate(tmp_path, base_runs, cand_runs, {"decode_ms_per_token": {"max_increase": 0.10}})
    check = by["decode_ms_per_token max_increase"]
    assert check.status == status and check.basis == "runs" and check.bounds_of == "ratio"
    assert check.runs == {"baseline": len(base_runs), "candidate": len(cand_runs)}
    assert res.exit_code == {"pass": 0, "fail": 1, "not shown": 3}[status]
    if status != "not shown" or len(base_runs) > 1:
        # with 3 runs a side, 95% one-sided bounds are the extreme pairwise ratios (Moses, k = 1)
        ratios = [c / b for c in cand_runs for b in base_runs]
        assert (check.low, check.high) == (pytest.approx(min(ratios)), pytest.approx(max(ratios)))
    else:
        assert check.low is None and check.high is None and "too few runs" in check.reason


def test_the_same_model_with_a_busy_outlier_is_not_failed(tmp_path):
    """The medians alone differ by +11% (the old rule's false alarm); the runs overlap."""
    base, cand = [10.0, 10.4, 30.0], [11.6, 10.2, 25.0]
    _, by = budget_gate(tmp_path, base, cand, {"decode_ms_per_token": {"max_increase": 0.10}})
    check = by["decode_ms_per_token max_increase"]
    assert np.median(cand) / np.median(base) > 1.10 and check.status == "not shown"


@pytest.mark.parametrize(
    "runs, status",
    [
        ([9.0, 10.0, 11.0, 9.5, 10.5], "pass"),  # five runs all below the limit: the median is
        ([9.0, 10.0, 11.0], "not shown"),  # three cannot show it at 95% (1/8 > 5%)
        ([60.0, 61.0, 59.0, 62.0, 60.5], "fail"),  # five runs all above
    ],
)
def test_absolute_budget_bounds_the_candidates_median(tmp_path, runs, status):
    _, by = budget_gate(tmp_path, [10.0, 10.0, 10.0], runs, {"decode_ms_per_token": {"max": 50}})
    check = by["decode_ms_per_token max"]
    assert check.status == status and check.bounds_of == "median"


def test_memory_and_model_size_are_one_figure_verdicts(tmp_path):
    budgets = {"peak_memory_bytes": {"max": 1e9, "max_increase": 0.1}, "model_bytes": {"max": 1e12}}
    _, by = budget_gate(tmp_path, [10.0] * 3, [10.0] * 3, budgets)
    assert all(ch.basis == "one figure" and ch.status == "pass" for ch in by.values())


@pytest.mark.parametrize(
    "budgets, match",
    [
        ({"decode_ms_per_token": {"max_increase": -0.1}}, "max_increase is -0.1"),
        ({"prefill_tok_s": {"max_decrease": 1.0}}, "in \\[0, 1\\)"),
        ({"decode_ms_per_token": {"max": "fast"}}, "give a number"),
    ],
)
def test_budget_values_are_checked(budgets, match):
    with pytest.raises(GateError, match=match):
        load_policy(policy(budgets=budgets))


# ---- the statistics behind "shown" -----------------------------------------------------------------


def test_mann_whitney_distribution_matches_enumeration():
    import itertools

    for m, n in [(3, 3), (2, 5), (4, 4)]:
        counts = [0] * (m * n + 1)
        for first in itertools.combinations(range(m + n), m):
            second = set(range(m + n)) - set(first)
            counts[sum(a > b for a in first for b in second)] += 1
        exact = np.cumsum(counts) / math.comb(m + n, m)
        assert np.allclose(gate_stats._mann_whitney_cdf(m, n), exact)


def test_shift_bounds_hold_their_level_for_exchangeable_runs():
    """The same model twice: the shift is 0, a bound beyond it happens at most alpha of the time."""
    rng = np.random.default_rng(5)
    wrong = 0
    for _ in range(4000):
        x, y = rng.lognormal(0, 0.8, 3), rng.lognormal(0, 0.8, 3)  # heavy spread, 3 runs a side
        _, low, high = gate_stats.shift_bounds(np.log(x), np.log(y), 0.95)
        wrong += low > 0
    assert wrong / 4000 == pytest.approx(0.05, abs=0.012)  # exactly 1/20 in theory
    assert gate_stats.shift_bounds([1.0], [1.0], 0.95)[1:] == (-math.inf, math.inf)


def test_tango_interval_covers_at_small_n():
    rng = np.random.default_rng(3)
    n, p_base_only, p_cand_only = 40, 0.15, 0.05  # true difference -0.10
    hits = 0
    for _ in range(1500):
        cells = rng.multinomial(n, [p_base_only, p_cand_only, 1 - p_base_only - p_cand_only])
        lo, hi = gate_stats.tango_interval(int(cells[0]), int(cells[1]), n, 0.95)
        hits += lo <= -0.10 <= hi
    assert hits / 1500 > 0.93
    lo, hi = gate_stats.tango_interval(0, 0, 3, 0.95)
    assert lo == pytest.approx(-hi) and -0.6 < lo < -0.5  # 3 agreeing documents say little


# ---- invalid input: exit 2 ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "setup, match",
    [
        (dict(cand={"samples": False}), "no per-document acc,none values.*--log_samples"),
        (dict(cand={"version": 2.0}), "task versions differ"),
        (dict(cand={"prompt_suffix": "!"}), "prompts/documents differ"),
        (dict(cand={"limit": 10}), "--limit 10"),
    ],
)
def test_inputs_that_cannot_be_compared(tmp_path, setup, match):
    x = synth.outcomes(20, 10)
    b, c = write_pair(tmp_path, {"t_a": x}, {"t_a": x}, **setup)
    with pytest.raises(GateError, match=match):
        gate(b, c, policy())


def test_cli_exit_codes(tmp_path, capsys):
    base, cand = paired(300, 20, 2, 78)
    b, c = write_pair(tmp_path, {"t_a": base}, {"t_a": cand})
    pol = tmp_path / "policy.yaml"
    pol.write_text("schema: slm-suite.gate-policy/1\nspec: t\nmargins: {default: 0.0}\n")
    assert (
        main(["gate", "--baseline", str(b), "--candidate", str(c), "--policy", str(pol), "--out", str(tmp_path / "r")])
        == 1
    )
    assert "Gate failed" in capsys.readouterr().out
    # the baseline against itself on 400 documents: margin 0 cannot be shown, 2 points can
    assert main(["gate", "--baseline", str(b), "--candidate", str(b.parent), "--policy", str(pol)]) == 3
    assert "⚠️ **Gate not shown**" in capsys.readouterr().out
    pol.write_text("schema: slm-suite.gate-policy/1\nspec: t\nmargins: {default: 0.02}\n")
    assert main(["gate", "--baseline", str(b), "--candidate", str(b.parent), "--policy", str(pol), "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("gate passed: all 1 checks shown within their bounds")
    # both models in one "baseline" folder
    assert main(["gate", "--baseline", str(tmp_path), "--candidate", str(c), "--policy", str(pol)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds runs of 2 models" in err[0]
    pol.write_text("margins: {default: -1}\n")
    assert main(["gate", "--baseline", str(b), "--candidate", str(c), "--policy", str(pol)]) == 2
    pol.write_text("budgets: {speed: {max: 1}}\n")
    assert main(["gate", "--baseline", str(b), "--candidate", str(c), "--policy", str(pol)]) == 2
    assert "unknown budget 'speed'" in capsys.readouterr().err


def test_packaged_example_policy_loads():
    p = load_policy("gate")
    assert p.spec == "lite" and p.margin("slm_gsm8k_lite", "math") == 0.03 and p.alpha == 0.05
    assert p.budgets["decode_ms_per_token"] == {"max_increase": 0.10}


# ---- real lm-eval runs ----------------------------------------------------------------------------


@pytest.mark.parametrize("folder, spec", [("dummy-limit20", "default"), ("llamacpp-limit30", "lite")])
def test_gate_on_real_runs_counts_the_same_discordant_docs(monkeypatch, folder, spec):
    import slm_tasks.leaderboards.release_gate as g
    from slm_tasks.leaderboards.spec import load_spec as real_load_spec

    monkeypatch.setattr(g, "load_spec", real_load_spec)
    b, c = sorted((synth.FIXTURES / folder).rglob("results_*.json"))
    res = gate(b, c, {"spec": spec, "allow_limit": True, "margins": {"default": 0.0}})
    assert len(res.checks) == 2
    for ch in res.checks:
        task = ch.name.split()[0]
        outcome = {}
        for side, path in (("b", b), ("c", c)):
            stamp = path.stem[len("results_") :]
            lines = (path.parent / f"samples_{task}_{stamp}.jsonl").read_text().splitlines()
            outcome[side] = {json.loads(x)["doc_id"]: json.loads(x)["acc"] for x in lines}
        base_only = sum(1 for d in outcome["b"] if outcome["b"][d] == 1 and outcome["c"][d] == 0)
        cand_only = sum(1 for d in outcome["b"] if outcome["b"][d] == 0 and outcome["c"][d] == 1)
        assert ch.discordant == {"baseline_only": base_only, "candidate_only": cand_only}
        assert ch.n == len(outcome["b"])
    assert res.smoke and not any(ch.passed for ch in res.checks)  # a smoke comparison never passes
    assert res.exit_code == (1 if res.failures else 3)
    with pytest.raises(GateError, match="--limit"):
        gate(b, c, {"spec": spec})
