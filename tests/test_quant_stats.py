"""The sweep's quality statistics and gate checks on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from slm_tasks.leaderboards import quant_compare as qc
from slm_tasks.leaderboards.gate_checks import FAIL, NOT_SHOWN, PASS
from slm_tasks.leaderboards.quant_board import pareto
from slm_tasks.leaderboards.quant_gate import domain_check, kl_check, load_quant_policy
from slm_tasks.results.errors import GateError


def test_choice_distribution_is_the_softmax_of_the_log_likelihoods():
    p = qc.choice_distribution([math.log(1), math.log(3)])
    assert p == pytest.approx([0.25, 0.75])
    # shifting every log-likelihood changes nothing (and large magnitudes do not overflow)
    assert qc.choice_distribution([-1000.0, -1000.0 + math.log(3)]) == pytest.approx([0.25, 0.75])


def test_kl_divergence_by_hand():
    # D(p || q) = 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75)
    assert qc.kl_divergence([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3))
    assert qc.kl_divergence([0.2, 0.8], [0.2, 0.8]) == 0.0
    # the reference's zero-mass choices add nothing; it is not symmetric
    assert qc.kl_divergence([0.0, 1.0], [0.5, 0.5]) == pytest.approx(math.log(2))
    assert qc.kl_divergence([0.5, 0.5], [0.1, 0.9]) != pytest.approx(qc.kl_divergence([0.1, 0.9], [0.5, 0.5]))


def test_sign_test_is_the_exact_binomial_by_hand():
    assert qc.sign_test(3, 0) == pytest.approx(2 * 0.5**3)  # two-sided: 0.25
    assert qc.sign_test(0, 0) == 1.0
    # 8 worse, 2 better: P(X <= 2) + P(X >= 8) for Binomial(10, 1/2) = 2 * 56/1024
    assert qc.sign_test(8, 2) == pytest.approx(2 * (1 + 10 + 45) / 1024)


def test_paired_difference_of_a_domain_is_the_mean_of_its_tasks():
    a_ref, a_fmt = np.array([1, 1, 1, 1, 0]), np.array([1, 0, 1, 1, 0])  # -1/5
    b_ref, b_fmt = np.array([0, 0, 1]), np.array([1, 0, 1])  # +1/3
    p = qc.paired_tasks([(a_ref, a_fmt), (b_ref, b_fmt)])
    assert p.diff == pytest.approx((-1 / 5 + 1 / 3) / 2)
    assert (p.worse, p.better, p.n) == (1, 1, 8)
    assert p.p_value == 1.0  # one each way
    assert p.reference == pytest.approx((4 / 5 + 1 / 3) / 2)
    assert p.low < p.diff < p.high


def test_identical_outcomes_do_not_give_a_zero_width_interval():
    # 20 identical documents: Tango's score interval, not a point (the gate's reason for it)
    p = qc.paired_tasks([(np.ones(20), np.ones(20))])
    assert p.diff == 0 and p.low < -0.1 and p.high > 0.1


def test_domain_check_verdicts():
    worse = qc.Paired(800, -0.05, -0.08, -0.03, 1e-6, 45, 5, 0.6, 0.55)
    same = qc.Paired(800, 0.0, -0.01, 0.01, 1.0, 4, 4, 0.6, 0.6)
    wide = qc.Paired(40, -0.01, -0.09, 0.07, 0.7, 3, 2, 0.6, 0.59)
    assert domain_check("d", worse, 0.02, 0.95, smoke=False).status == FAIL
    assert domain_check("d", same, 0.02, 0.95, smoke=False).status == PASS
    assert domain_check("d", wide, 0.02, 0.95, smoke=False).status == NOT_SHOWN
    smoke = domain_check("d", same, 0.02, 0.95, smoke=True)  # a smoke comparison never passes
    assert smoke.status == NOT_SHOWN and smoke.reason == "smoke comparison"


def test_kl_check_verdicts():
    rng = np.random.default_rng(0)
    small = rng.exponential(0.001, 2000)
    large = rng.exponential(0.05, 2000)
    assert kl_check(small, 0.01, 0.05, 2000, 1, smoke=False).status == PASS
    assert kl_check(large, 0.01, 0.05, 2000, 1, smoke=False).status == FAIL
    near = kl_check(rng.exponential(0.01, 50), 0.01, 0.05, 2000, 1, smoke=False)
    assert near.status == NOT_SHOWN and near.low < 0.01 < near.high
    assert kl_check([], 0.01, 0.05, 2000, 1, smoke=False).status == NOT_SHOWN


def test_pareto_frontier():
    rows = [
        {"format": "F16", "accuracy": 0.60, "mem": 400},
        {"format": "Q8_0", "accuracy": 0.60, "mem": 250},  # as accurate, smaller: dominates F16
        {"format": "Q4_K_M", "accuracy": 0.58, "mem": 200},
        {"format": "Q3_K_M", "accuracy": 0.50, "mem": 210},  # less accurate and larger than Q4_K_M
    ]
    assert pareto(rows, "mem") == {"Q8_0", "Q4_K_M"}


def test_policy_errors_are_one_line(tmp_path):
    assert load_quant_policy(None).kl_max_mean == 0.01  # the packaged example
    bad = tmp_path / "p.yaml"
    bad.write_text("schema: slm-suite.quant-policy/1\nkl: {max_mean: -1}\n")
    with pytest.raises(GateError, match="kl.max_mean > 0"):
        load_quant_policy(bad)
    with pytest.raises(GateError, match="not found"):
        load_quant_policy(tmp_path / "missing.yaml")
    bad.write_text("schema: slm-suite.gate-policy/1\n")
    with pytest.raises(GateError, match="schema: slm-suite.quant-policy/1"):
        load_quant_policy(bad)


def test_the_quantisation_policy_is_not_offered_as_a_board_spec():
    from slm_tasks.leaderboards.spec import packaged_specs

    assert packaged_specs() == ["default", "lite"]
