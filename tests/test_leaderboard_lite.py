"""Integration: real lm-eval runs of the lite profile (dummy model, offline mirror) into a lite
board and through the gate. Needs SLM_DATA_DIR (the offline mirror); ~20 s."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slm_tasks.leaderboards import BoardError, build, gate

LITE_TASKS = ["slm_arc_easy_lite", "slm_boolq_lite"]


@pytest.fixture(scope="module")
def lite_runs(tmp_path_factory, hub) -> Path:
    data = str(hub)  # the offline mirror (conftest: SLM_DATA_DIR or ../shared/hub)
    from lm_eval.loggers import EvaluationTracker

    from slm_tasks.api import evaluate

    out = tmp_path_factory.mktemp("lite-runs")
    for seed in (1, 2):  # the dummy model answers at random; two seeds make two "models"
        tracker = EvaluationTracker(output_path=str(out))
        res = evaluate(
            "dummy",
            {"model": f"dummy-lite-{seed}"},
            tasks=LITE_TASKS,
            data_dir=data,
            log_samples=True,
            evaluation_tracker=tracker,
            random_seed=seed,
            numpy_random_seed=seed,
            torch_random_seed=seed,
            fewshot_random_seed=seed,
        )
        samples = res.pop("samples")
        tracker.save_results_aggregated(results=res, samples=samples)
        for name in res["configs"]:
            tracker.save_results_samples(task_name=name, samples=samples[name])
    return out


def test_lite_board_is_a_publication_board(lite_runs, tmp_path):
    out = build([lite_runs], spec="lite", out=tmp_path / "board")
    board = json.loads((out / "leaderboard.json").read_text())
    assert board["smoke"] is False and board["spec"]["profile"] == "lite"
    assert [c["task"] for c in board["columns"]] == ["slm_boolq_lite", "slm_arc_easy_lite"]
    assert "slm_hellaswag_lite" in board["missing_tasks"]
    for path in sorted(lite_runs.rglob("results_*.json")):
        res = json.loads(path.read_text())
        assert res["config"]["limit"] is None
        row = next(r for r in board["rows"] if r["model"] == res["model_name"])
        for task in LITE_TASKS:
            assert row["tasks"][task]["value"] == pytest.approx(res["results"][task]["acc,none"])
            assert row["tasks"][task]["n"] == res["n-samples"][task]["effective"] == 200
        # a lite twin has its own alias, in lm-eval's table and on the board
        assert {res["results"][t]["alias"] for t in LITE_TASKS} == {"arc_easy (lite)", "boolq (lite)"}
    assert {c["title"] for c in board["columns"]} == {"arc_easy (lite)", "boolq (lite)"}
    arc = next(c for c in board["columns"] if c["task"] == "slm_arc_easy_lite")
    assert arc["random_baseline_source"] == "samples (1/choices)" and 0.2 < arc["random_baseline"] <= 1 / 3
    assert (out / "index.html").stat().st_size > 10_000


def test_lite_spec_ignores_full_suite_runs(lite_runs, tmp_path):
    fixtures = Path(__file__).parent / "fixtures" / "results" / "dummy-limit20"
    with pytest.raises(BoardError, match="none of the result files has a task of board 'lite'"):
        build([fixtures], spec="lite", out=tmp_path / "b", allow_limit=True)


def test_gate_a_lite_run_against_itself_passes(lite_runs, tmp_path):
    run = sorted(lite_runs.rglob("results_*.json"))[0]
    # 200 agreeing documents show non-inferiority at a 2-point margin (not at 0: nothing can)
    result = gate(run, run, {"spec": "lite", "margins": {"default": 0.02}}, out=tmp_path / "g")
    assert result.passed and result.exit_code == 0
    assert {c.name for c in result.checks} == {f"{t} acc,none" for t in LITE_TASKS}
    assert all(c.observed == 0 and c.discordant == {"baseline_only": 0, "candidate_only": 0} for c in result.checks)
