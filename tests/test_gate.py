"""The release gate: paired per-document tests, margins, budgets, reports and exit codes."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from slm_tasks.cli import main
from slm_tasks.leaderboards import GateError, gate
from slm_tasks.leaderboards.release_gate import load_policy
from slm_tasks.results import stats


SPEC = {"schema": "slm-suite.board-spec/1", "name": "t", "domains": [
    {"name": "commonsense", "tasks": [{"task": "t_a"}, {"task": "t_b"}]},
    {"name": "math", "tasks": [{"task": "t_m"}]},
]}


def policy(**kw) -> dict:
    return {"spec": "", "alpha": 0.05, "margins": {"default": 0.0}, **kw}


def paired(both: int, base_only: int, cand_only: int, neither: int) -> tuple[list[float], list[float]]:
    """Per-doc outcomes of two models with the given agreement table."""
    base = [1.0] * both + [1.0] * base_only + [0.0] * cand_only + [0.0] * neither
    cand = [1.0] * both + [0.0] * base_only + [1.0] * cand_only + [0.0] * neither
    return base, cand


def write_pair(synth, tmp_path, tasks_base: dict, tasks_cand: dict, **kw) -> tuple[Path, Path]:
    b = synth.make_run(tmp_path / "base", "base-model", tasks_base, **kw.get("base", {}))
    c = synth.make_run(tmp_path / "cand", "cand-model", tasks_cand, **kw.get("cand", {}))
    return b, c


@pytest.fixture(autouse=True)
def small_spec(monkeypatch):
    # the gate reads the task -> domain/metric map from a board spec; use a tiny one
    import slm_tasks.leaderboards.release_gate as g

    monkeypatch.setattr(g, "load_spec", lambda name: __import__(
        "slm_tasks.leaderboards.spec", fromlist=["parse_spec"]).parse_spec(SPEC, "test spec"))


# ---- the statistics ----------------------------------------------------------------------------

def test_exact_mcnemar_is_the_binomial_tail_on_discordant_pairs():
    base, cand = (np.array(x) for x in paired(50, 10, 2, 8))
    r = stats.mcnemar_regression(base, cand, margin=0.0, level=0.95)
    tail = sum(math.comb(12, k) for k in range(10, 13)) / 2 ** 12  # P(X >= 10), X ~ Bin(12, 1/2)
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

def test_paired_test_catches_a_regression_the_unpaired_test_misses(synth, tmp_path):
    """lm-eval's comparison script tests the two scores as independent samples (lm-eval #3831).
    Models that agree on most documents make that test blind to a consistent per-doc drop."""
    base, cand = paired(both=300, base_only=20, cand_only=2, neither=78)  # 80.0% -> 75.5%
    b, c = write_pair(synth, tmp_path, {"t_a": base}, {"t_a": cand})
    result = gate(b, c, policy())
    (check,) = result.checks
    assert check.method == "exact McNemar" and check.discordant == {"baseline_only": 20, "candidate_only": 2}
    assert check.p_holm < 0.05 and not check.passed and result.exit_code == 1
    assert check.p_unpaired > 0.05  # the unpaired z-test from the two stderrs sees nothing
    assert check.observed == pytest.approx(-18 / 400)


def test_identical_and_perfect_runs_pass(synth, tmp_path):
    perfect = synth.outcomes(100, 100)
    b, c = write_pair(synth, tmp_path, {"t_a": perfect, "t_b": synth.outcomes(100, 0)},
                      {"t_a": perfect, "t_b": synth.outcomes(100, 0)})
    result = gate(b, c, policy())
    assert result.passed and result.exit_code == 0
    assert all(ch.p_value == 1.0 and ch.observed == 0 for ch in result.checks)


def test_holm_correction_across_tasks_and_domain_margins(synth, tmp_path):
    # each task alone would fail at alpha 0.05 (p ~ 0.03), not after Holm over three tasks
    base, cand = paired(200, 9, 2, 89)
    b, c = write_pair(synth, tmp_path, {"t_a": base, "t_b": base, "t_m": base},
                      {"t_a": cand, "t_b": cand, "t_m": cand})
    res = gate(b, c, policy())
    assert all(ch.p_value < 0.05 for ch in res.checks) and res.passed
    assert all(ch.p_holm == pytest.approx(min(1, 3 * ch.p_value)) for ch in res.checks)
    # a larger drop in every task: the math domain's margin tolerates it, commonsense does not
    base, cand = paired(200, 16, 0, 84)
    b, c = write_pair(synth, tmp_path / "2", {"t_a": base, "t_m": base}, {"t_a": cand, "t_m": cand})
    res = gate(b, c, policy(margins={"default": 0.0, "domains": {"math": 0.1}}))
    verdict = {ch.name.split()[0]: ch.passed for ch in res.checks}
    assert verdict == {"t_a": False, "t_m": True}
    assert {ch.name.split()[0]: ch.margin for ch in res.checks} == {"t_a": 0.0, "t_m": 0.1}


def test_non_binary_metrics_use_the_paired_bootstrap(synth, tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.9, 150)
    cand = np.clip(base - 0.05 + rng.normal(0, 0.02, 150), 0, 1)  # consistently 5 points lower
    b, c = write_pair(synth, tmp_path, {"t_a": base.tolist()}, {"t_a": cand.tolist()})
    (check,) = gate(b, c, policy()).checks
    assert check.method == "paired bootstrap" and not check.passed
    assert check.high < 0 and check.observed == pytest.approx(float((cand - base).mean()))
    (check,) = gate(b, c, policy(margins={"default": 0.10})).checks
    assert check.passed and check.non_inferiority_shown


def test_budgets_fail_with_the_numbers_and_missing_costs_follow_the_policy(synth, tmp_path):
    same = synth.outcomes(50, 40)
    b, c = write_pair(synth, tmp_path, {"t_a": same}, {"t_a": same},
                      base={"cost": synth.cost_record("base-model", 10.0, 500_000_000)},
                      cand={"cost": synth.cost_record("cand-model", 12.0, 400_000_000)})
    res = gate(b, c, policy(budgets={"decode_ms_per_token": {"max_increase": 0.10, "max": 50},
                                     "peak_memory_bytes": {"max": 1e9}}))
    by = {ch.name: ch for ch in res.checks}
    assert not by["decode_ms_per_token max_increase"].passed
    assert by["decode_ms_per_token max_increase"].limit == pytest.approx(11.0)
    assert "12 ms/token" in by["decode_ms_per_token max_increase"].message and "+20.0%" in by[
        "decode_ms_per_token max_increase"].message
    assert by["decode_ms_per_token max"].passed and by["peak_memory_bytes max"].passed
    assert res.exit_code == 1
    # energy is null in the records: fails by default, skipped on request
    res = gate(b, c, policy(budgets={"energy_per_token_j": {"max": 1.0}}))
    assert not res.passed and "no measured energy_per_token_j" in res.failures[0].message
    assert gate(b, c, policy(budgets={"energy_per_token_j": {"max": 1.0}, "missing": "skip"})).passed


def test_reports_markdown_json_junit(synth, tmp_path):
    base, cand = paired(300, 20, 2, 78)
    b, c = write_pair(synth, tmp_path, {"t_a": base, "t_b": base}, {"t_a": cand, "t_b": base})
    out = tmp_path / "report"
    res = gate(b, c, policy(), out=out)
    md = (out / "gate.md").read_text()
    assert "Gate failed" in md and "t_a acc,none: regressed beyond the margin: difference -4.5 points" in md
    assert "margin 0.0 points" in md and "95% CI [" in md
    doc = json.loads((out / "gate.json").read_text())
    assert doc["schema"] == "slm-suite.gate-result/1" and doc["exit_code"] == 1
    assert [c["passed"] for c in doc["checks"]] == [False, True]
    suite = ET.parse(out / "gate.junit.xml").getroot().find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    failure = suite.find("testcase[@name='t_a acc,none']/failure")
    assert failure is not None and "difference -4.5 points" in failure.get("message")
    assert res.to_markdown() == md


def test_all_means_the_tasks_of_the_overall_and_icl_variants_only_when_named(synth, tmp_path, monkeypatch):
    import slm_tasks.leaderboards.release_gate as g
    from slm_tasks.leaderboards.spec import parse_spec

    spec = dict(SPEC, icl={"match": "slm_icl_*shot", "metric": "acc,none"})
    monkeypatch.setattr(g, "load_spec", lambda name: parse_spec(spec, "test spec"))
    base, cand = paired(300, 20, 2, 78)
    b, c = write_pair(synth, tmp_path, {"t_a": base, "slm_icl_mmlu_5shot": base},
                      {"t_a": base, "slm_icl_mmlu_5shot": cand})
    assert [ch.name for ch in gate(b, c, policy()).checks] == ["t_a acc,none"]
    named = gate(b, c, policy(tasks=["t_a", "slm_icl_mmlu_5shot"]))
    assert [ch.name for ch in named.checks] == ["t_a acc,none", "slm_icl_mmlu_5shot acc,none"]
    assert not named.passed and named.failures[0].margin == 0.0  # no domain: the default margin


# ---- invalid input: exit 2 ----------------------------------------------------------------------

@pytest.mark.parametrize("setup, match", [
    (dict(cand={"samples": False}), "no per-document acc,none values.*--log_samples"),
    (dict(cand={"version": 2.0}), "task versions differ"),
    (dict(cand={"prompt_suffix": "!"}), "prompts/documents differ"),
    (dict(cand={"limit": 10}), "--limit 10"),
])
def test_inputs_that_cannot_be_compared(synth, tmp_path, setup, match):
    x = synth.outcomes(20, 10)
    b, c = write_pair(synth, tmp_path, {"t_a": x}, {"t_a": x}, **setup)
    with pytest.raises(GateError, match=match):
        gate(b, c, policy())


def test_cli_exit_codes(synth, tmp_path, capsys):
    base, cand = paired(300, 20, 2, 78)
    b, c = write_pair(synth, tmp_path, {"t_a": base}, {"t_a": cand})
    pol = tmp_path / "policy.yaml"
    pol.write_text("schema: slm-suite.gate-policy/1\nspec: t\nmargins: {default: 0.0}\n")
    assert main(["gate", "--baseline", str(b), "--candidate", str(c), "--policy", str(pol),
                 "--out", str(tmp_path / "r")]) == 1
    assert "Gate failed" in capsys.readouterr().out
    assert main(["gate", "--baseline", str(b), "--candidate", str(b.parent), "--policy", str(pol)]) == 0
    capsys.readouterr()
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
def test_gate_on_real_runs_counts_the_same_discordant_docs(synth, monkeypatch, folder, spec):
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
            stamp = path.stem[len("results_"):]
            lines = (path.parent / f"samples_{task}_{stamp}.jsonl").read_text().splitlines()
            outcome[side] = {json.loads(x)["doc_id"]: json.loads(x)["acc"] for x in lines}
        base_only = sum(1 for d in outcome["b"] if outcome["b"][d] == 1 and outcome["c"][d] == 0)
        cand_only = sum(1 for d in outcome["b"] if outcome["b"][d] == 0 and outcome["c"][d] == 1)
        assert ch.discordant == {"baseline_only": base_only, "candidate_only": cand_only}
        assert ch.n == len(outcome["b"])
    assert res.exit_code == (0 if all(ch.passed for ch in res.checks) else 1)
    with pytest.raises(GateError, match="--limit"):
        gate(b, c, {"spec": spec})
