"""The scores are defined once, by the board spec: `slm-suite run`, the board and the gate agree.

Domain = plain mean of its tasks, overall = plain mean of the five capability domains (SLM
survey); the ICL variants are reported as a paired gain beside the overall, never in it.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from slm_tasks import icl
from slm_tasks.api import domain_summary
from slm_tasks.leaderboards import BoardError, build
from slm_tasks.leaderboards.spec import load_spec, parse_spec

REPO = Path(__file__).resolve().parents[1]
CAPABILITY = ["commonsense", "problem_solving", "math", "coding", "long_context"]


def group_yaml(name: str) -> dict:
    (path,) = REPO.glob(f"task_configs/*/_{name}.yaml")
    return yaml.safe_load(path.read_text())


# ---- the packaged specs are the definition, and the group YAMLs agree with them -------------


@pytest.mark.parametrize("spec_name, suffix", [("default", ""), ("lite", "_lite")])
def test_spec_domains_equal_the_domain_groups(spec_name, suffix):
    spec = load_spec(spec_name)
    assert [d.name for d in spec.domains] == CAPABILITY
    for d in spec.domains:
        group = group_yaml(f"slm_{d.name}{suffix}")
        assert [t.task for t in d.tasks] == group["task"]  # no globs: a fixed set of tasks
        (agg,) = group["aggregate_metric_list"]
        assert agg["weight_by_size"] is False  # plain mean, as the spec's domain
        for flt in agg.get("filter_list", ["none"]):
            assert {t.metrics[0] for t in d.tasks} == {f"{agg['metric']},{flt}"}
    suite = yaml.safe_load((REPO / f"task_configs/_slm_suite{suffix}.yaml").read_text())
    assert suite["task"] == [f"slm_{d}{suffix}" for d in CAPABILITY] + [f"slm_icl{suffix}"]


@pytest.mark.parametrize("spec_name, suffix", [("default", ""), ("lite", "_lite")])
def test_the_icl_glob_is_exactly_the_icl_variants(spec_name, suffix):
    spec = load_spec(spec_name)
    variants = {v for k in icl.SHOTS for v in group_yaml(f"slm_icl_{k}shot{suffix}")["task"]}
    every_task = {p.stem for p in (REPO / "task_configs").rglob("slm_*.yaml")}
    assert set(spec.icl_tasks(every_task)) == variants
    assert (spec.icl.low, spec.icl.high, spec.icl.metric) == (0, 5, "acc,none")
    assert not {name for _, _, name in spec.resolve(every_task)} & variants


def test_a_spec_may_not_put_icl_variants_into_a_domain():
    with pytest.raises(BoardError, match="under 'icl:', outside the overall"):
        parse_spec({"domains": [{"name": "icl", "tasks": [{"match": "slm_icl_*shot"}]}]}, "s.yaml")
    with pytest.raises(BoardError, match="icl: shots"):
        parse_spec({"domains": [{"name": "d", "tasks": ["t"]}], "icl": {"match": "x", "shots": [5, 0]}}, "s.yaml")


# ---- slm-suite run's summary and the board: same numbers --------------------------------------


def test_summary_of_a_results_file_equals_its_board_row(synth, tmp_path):
    runs = synth.FIXTURES / "llamacpp-limit30"
    board = json.loads(
        (build([runs], spec="lite", out=tmp_path / "b", allow_limit=True, html=False) / "leaderboard.json").read_text()
    )
    for path in sorted(runs.rglob("results_*.json")):
        res = json.loads(path.read_text())
        row = next(r for r in board["rows"] if r["model"] == res["config"]["slm_cost"]["model"]["name"])
        summary = domain_summary(res)
        assert summary["spec"] == "lite"
        assert summary["overall"] == pytest.approx(row["overall"]["value"], abs=1e-6)
        for name, d in summary["domains"].items():
            assert d["value"] == pytest.approx(row["domains"][name]["value"], abs=1e-6)
        assert summary["overall"] == pytest.approx(
            (res["results"]["slm_boolq_lite"]["acc,none"] + res["results"]["slm_arc_easy_lite"]["acc,none"]) / 2
        )


def test_slm_suite_run_prints_the_boards_overall_and_keeps_icl_out_of_it(tmp_path, mirror_env, monkeypatch, capsys):
    """A real (dummy-model) `slm-suite run` of two lite tasks and one ICL pair, --limit 20."""
    from slm_tasks import api
    from slm_tasks.cli import main

    monkeypatch.setitem(api.BACKENDS, "llamacpp", "dummy")  # lm-eval's random-answer model
    tasks = [
        "slm_arc_easy_lite",
        "slm_boolq_lite",
        "slm_icl_arc_challenge_0shot_lite",
        "slm_icl_arc_challenge_5shot_lite",
    ]
    assert main(["run", "--tasks", ",".join(tasks), "--limit", "20", "--output-path", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    printed = float(re.search(r"^overall \(plain mean of 2 capability domains\): ([0-9.]+)$", out, re.M)[1])
    board = json.loads((tmp_path / "leaderboard" / "leaderboard.json").read_text())
    (row,) = board["rows"]
    assert printed == pytest.approx(row["overall"]["value"], abs=5e-5)
    (results_file,) = tmp_path.rglob("results_*.json")
    res = json.loads(results_file.read_text())
    acc = {t: res["results"][t]["acc,none"] for t in tasks}
    assert row["overall"]["value"] == pytest.approx((acc["slm_arc_easy_lite"] + acc["slm_boolq_lite"]) / 2, abs=1e-6)
    # ICL: its own columns, the paired gain, and not a domain
    assert set(row["domains"]) == {"commonsense", "problem_solving"}
    assert board["icl"]["variants"] == sorted(tasks[2:])
    gain = row["icl"]["tasks"]["arc_challenge (lite)"]
    assert gain["method"] == "paired" and gain["n"] == 20
    assert gain["value"] == pytest.approx(
        acc["slm_icl_arc_challenge_5shot_lite"] - acc["slm_icl_arc_challenge_0shot_lite"], abs=1e-6
    )
    assert row["icl"]["mean"]["value"] == gain["value"]
    assert "ICL gain (5-shot minus 0-shot), metric acc,none (not part of the overall):" in out


# ---- the board: ICL gain columns outside the overall ------------------------------------------

SPEC = {
    "schema": "slm-suite.board-spec/1",
    "name": "t",
    "domains": [
        {"name": "commonsense", "tasks": [{"task": "t_a"}]},
        {"name": "problem_solving", "tasks": [{"task": "t_c"}]},
    ],
    "icl": {"title": "ICL gain", "match": "slm_icl_*shot"},
}


def icl_run(synth, root, model, zero, five, with_icl=True, samples=True):
    tasks = {"t_a": synth.outcomes(40, 20), "t_c": synth.outcomes(40, 10)}
    if with_icl:
        tasks |= {"slm_icl_arc_challenge_0shot": zero, "slm_icl_arc_challenge_5shot": five}
    same = "slm_icl_arc_challenge"
    return synth.make_run(
        root,
        model,
        tasks,
        samples=samples,
        docs_of={f"{same}_0shot": same, f"{same}_5shot": same},
        n_shot={f"{same}_0shot": 0, f"{same}_5shot": 5},
    )


def test_icl_variants_are_gains_beside_the_overall_not_in_it(synth, tmp_path):
    rng = np.random.default_rng(4)
    zero = (rng.random(60) < 0.3).astype(float)
    five = np.maximum(zero, rng.random(60) < 0.3)  # shots fix some answers, break none
    icl_run(synth, tmp_path / "runs", "with-icl", zero.tolist(), five.tolist())
    icl_run(synth, tmp_path / "runs", "without-icl", [], [], with_icl=False)
    out = build([tmp_path / "runs"], spec=SPEC, out=tmp_path / "b")
    board = json.loads((out / "leaderboard.json").read_text())
    rows = {r["model"]: r for r in board["rows"]}
    # same capability tasks, so the same overall whatever the ICL variants scored
    assert rows["with-icl"]["overall"]["value"] == rows["without-icl"]["overall"]["value"] == pytest.approx(0.375)
    assert rows["with-icl"]["rank"] and rows["without-icl"]["rank"]  # ICL is not required for a rank
    assert {c["task"] for c in board["columns"]} == {"t_a", "t_c"}
    g = rows["with-icl"]["icl"]["tasks"]["arc_challenge"]
    d = five - zero
    assert g["method"] == "paired" and g["n"] == 60
    assert g["value"] == pytest.approx(d.mean(), abs=1e-6)
    assert g["se"] == pytest.approx(d.std(ddof=1) / np.sqrt(60), abs=1e-6)
    assert g["low"] < g["value"] < g["high"]
    assert rows["without-icl"]["icl"]["mean"] is None
    files = rows["with-icl"]["provenance"]["files"][0]
    assert "slm_icl_arc_challenge_5shot" in files["tasks"]  # validated and traced like every task
    line = next(csv.DictReader((out / "leaderboard.csv").open()))
    assert "icl_gain" in line and "icl_gain:arc_challenge" in line
    md = (out / "leaderboard.md").read_text()
    assert "| ICL gain |" in md.splitlines()[2] and f"{100 * d.mean():+.1f}" in md
    assert "ICL gain" in (out / "index.html").read_text()


def test_icl_gain_without_samples_is_unpaired(synth, tmp_path):
    icl_run(synth, tmp_path / "runs", "m", synth.outcomes(40, 10), synth.outcomes(40, 14), samples=False)
    board = json.loads(
        (build([tmp_path / "runs"], spec=SPEC, out=tmp_path / "b", html=False) / "leaderboard.json").read_text()
    )
    g = board["rows"][0]["icl"]["mean"]
    assert g["method"] == "unpaired" and g["value"] == pytest.approx(0.1)


def test_an_icl_shot_override_is_one_board_error_naming_the_model(synth, tmp_path):
    path = icl_run(synth, tmp_path / "runs", "m", synth.outcomes(10, 2), synth.outcomes(10, 3))
    res = json.loads(path.read_text())
    res["n-shot"]["slm_icl_arc_challenge_5shot"] = 3  # as --num_fewshot 3 would record it
    path.write_text(json.dumps(res))
    with pytest.raises(BoardError, match=r"model 'm' .*--num_fewshot"):
        build([tmp_path / "runs"], spec=SPEC, out=tmp_path / "b", html=False)
