"""The leaderboard builder: from lm-eval result files to leaderboard.json/.csv/.md.

Real inputs are the committed dummy-model runs (tests/fixtures/results); edge cases are
synthetic runs written in lm-eval's layout by tests/test_leaderboard_synthetic.py.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from slm_tasks.errors import SLMError
from slm_tasks.leaderboards import BoardError, build
from slm_tasks.leaderboards.ingest import load_run
from slm_tasks.leaderboards.spec import load_spec

SMALL = {
    "schema": "slm-suite.board-spec/1",
    "name": "t",
    "domains": [
        {"name": "commonsense", "tasks": [{"task": "t_a"}, {"task": "t_b"}]},
        {"name": "problem_solving", "tasks": [{"task": "t_c"}]},
    ],
    "cost": {"hardware": {"backend": "llama.cpp"}},
}


def read_board(out: Path) -> dict:
    return json.loads((out / "leaderboard.json").read_text())


# ---- real lm-eval runs -----------------------------------------------------------------


def test_limit_runs_are_refused_by_default(synth, tmp_path):
    with pytest.raises(BoardError) as err:
        build([synth.FIXTURES / "dummy-limit20"], spec="default", out=tmp_path / "b", html=False)
    msg = str(err.value)
    assert "--limit 20" in msg and "dummy-seed1" in msg and "dummy-seed2" in msg
    assert isinstance(err.value, SLMError)
    assert not (tmp_path / "b").exists()


def test_smoke_board_from_real_runs_matches_the_results_files(synth, tmp_path):
    out = build([synth.FIXTURES / "dummy-limit20"], spec="default", out=tmp_path / "b", html=False, allow_limit=True)
    board = read_board(out)
    assert board["schema"] == "slm-suite.leaderboard/1"
    assert board["smoke"] is True and "not for publication" in board["smoke_reason"]
    assert {c["task"] for c in board["columns"]} == {"slm_arc_easy", "slm_boolq"}
    assert "slm_hellaswag" in board["missing_tasks"]
    for path in synth.REAL_RUNS:
        res = json.loads(path.read_text())
        row = next(r for r in board["rows"] if r["model"] == res["model_name"])
        for task in ("slm_arc_easy", "slm_boolq"):
            cell = row["tasks"][task]
            assert cell["value"] == pytest.approx(res["results"][task]["acc,none"])
            assert cell["method"] == "wilson" and cell["n"] == 20
            assert cell["low"] <= cell["value"] <= cell["high"]
        # one task per domain here, so domain = task and overall = mean of the two domains
        assert row["domains"]["commonsense"]["value"] == pytest.approx(res["results"]["slm_boolq"]["acc,none"])
        expected = (res["results"]["slm_boolq"]["acc,none"] + res["results"]["slm_arc_easy"]["acc,none"]) / 2
        assert row["overall"]["value"] == pytest.approx(expected)
        assert row["provenance"]["files"][0]["task_hashes"]["slm_boolq"] == res["task_hashes"]["slm_boolq"]
        # no cost record: only lm-eval's own wall time, everything else missing
        assert row["cost"]["wall_s"]["value"] == pytest.approx(float(res["total_evaluation_time_seconds"]))
        assert row["cost"]["decode_ms_per_token"]["value"] is None
    ranks = [r["overall"]["value"] for r in board["rows"]]
    assert ranks == sorted(ranks, reverse=True)
    cols = {c["task"]: c for c in board["columns"]}
    assert cols["slm_arc_easy"]["split"] == "test" and cols["slm_boolq"]["split"] == "validation"
    assert cols["slm_boolq"]["shots"] == 0 and cols["slm_boolq"]["metric"] == "acc,none"
    # boolq has 2 choices per doc: chance level derived from the samples
    assert cols["slm_boolq"]["random_baseline"] == pytest.approx(0.5)


def test_csv_and_markdown_carry_the_same_numbers(synth, tmp_path):
    out = build([synth.FIXTURES / "dummy-limit20"], spec="default", out=tmp_path / "b", html=False, allow_limit=True)
    board = read_board(out)
    rows = list(csv.DictReader((out / "leaderboard.csv").open()))
    assert [r["model"] for r in rows] == [r["model"] for r in board["rows"]]
    for r, b in zip(rows, board["rows"]):
        assert float(r["overall"]) == pytest.approx(b["overall"]["value"])
        assert r["decode_ms_per_token"] == ""  # not measured: empty, never a number
    md = (out / "leaderboard.md").read_text()
    assert "Smoke board" in md and "| slm_boolq | commonsense | acc,none | 0 | validation |" in md
    for b in board["rows"]:
        assert f"{100 * b['overall']['value']:.1f}" in md
    assert "—" in md


def test_spec_by_bare_name_path_and_unknown(tmp_path):
    assert load_spec("lite").profile == "lite"
    assert load_spec("default").profile == "full"
    p = tmp_path / "s.yaml"
    p.write_text("domains: [{name: d, tasks: [{task: x, metric: 'acc,none'}]}]\n")
    assert load_spec(str(p)).domains[0].tasks[0].task == "x"
    with pytest.raises(BoardError, match="not found.*default.*lite"):
        load_spec("nope")
    p.write_text("profile: lite\ndomains: [{name: d, tasks: [{task: slm_boolq}]}]\n")
    with pytest.raises(BoardError, match="_lite"):
        load_spec(str(p))


# ---- validation edge cases -----------------------------------------------------------------


def test_duplicate_model_and_task_names_both_files_when_strict(synth, tmp_path):
    a = synth.make_run(tmp_path / "m1", "model-x", {"t_a": synth.outcomes(10, 5)}, stamp="2026-01-01T00-00-00.1")
    b = synth.make_run(tmp_path / "m2", "model-x", {"t_a": synth.outcomes(10, 6)}, stamp="2026-01-02T00-00-00.1")
    with pytest.raises(BoardError) as err:  # without strict the newest wins (tests/test_hostile_writes.py)
        build([tmp_path], spec=SMALL, out=tmp_path / "b", html=False, strict=True)
    assert "model 'model-x', task t_a" in str(err.value)
    assert str(a) in str(err.value) and str(b) in str(err.value)


def test_mixed_task_versions_are_refused(synth, tmp_path):
    synth.make_run(tmp_path, "m1", {"t_a": synth.outcomes(10, 5)}, version=1.0)
    synth.make_run(tmp_path, "m2", {"t_a": synth.outcomes(10, 5)}, version=2.0)
    with pytest.raises(BoardError, match=r"t_a: task versions differ.*1\.0 in m1/.*2\.0 in m2/"):
        build([tmp_path], spec=SMALL, out=tmp_path / "b", html=False)


def test_different_prompts_are_refused_and_located(synth, tmp_path):
    synth.make_run(tmp_path, "m1", {"t_a": synth.outcomes(10, 5)})
    synth.make_run(tmp_path, "m2", {"t_a": synth.outcomes(10, 5)}, prompt_suffix=" (v2)")
    with pytest.raises(BoardError, match=r"t_a: prompts/documents differ.*prompts differ on 10 docs"):
        build([tmp_path], spec=SMALL, out=tmp_path / "b", html=False)


def test_different_data_checksums_are_refused(synth, tmp_path):
    a = synth.make_run(tmp_path, "m1", {"t_a": synth.outcomes(10, 5)})
    synth.make_run(tmp_path, "m2", {"t_a": synth.outcomes(10, 5)})
    res = json.loads(a.read_text())
    res["configs"]["t_a"]["dataset_kwargs"]["hub_config"] = "ARC-Challenge"
    a.write_text(json.dumps(res))
    with pytest.raises(BoardError, match=r"t_a: data \(dataset_kwargs"):
        build([tmp_path], spec=SMALL, out=tmp_path / "b", html=False)


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda p: p.write_text('{"results": {"t_a": '), "not valid JSON"),
        (lambda p: p.write_text('{"hello": 1}'), "not an lm-eval results file"),
        (lambda p: p.with_suffix(".cost.json").write_text('{"schema": "other/9"}'), "cost record schema"),
        (lambda p: next(p.parent.glob("samples_*")).write_text("not json\n"), "line 1 is not an lm-eval sample"),
    ],
)
def test_malformed_input_is_one_clear_error_and_keeps_the_old_board(synth, tmp_path, damage, match):
    src = tmp_path / "runs"
    synth.make_run(src, "m1", {"t_a": synth.outcomes(10, 5)})
    victim = synth.make_run(src, "m2", {"t_a": synth.outcomes(10, 7)})
    out = build([src], spec=SMALL, out=tmp_path / "b", html=False)
    before = (out / "leaderboard.json").read_bytes()
    damage(victim)
    with pytest.raises(BoardError, match=match) as err:
        build([src], spec=SMALL, out=out, html=False)
    assert "m2" in str(err.value)  # names the file
    assert (out / "leaderboard.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "runs"]  # no temp folders left


def test_cli_prints_one_line_and_exits_2(synth, tmp_path, capsys):
    from slm_tasks.cli import main

    bad = tmp_path / "results_x.json"
    bad.write_text("{")
    assert main(["leaderboard", str(bad), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not valid JSON" in err[0] and str(bad) in err[0]
    assert (
        main(
            [
                "leaderboard",
                str(synth.FIXTURES / "dummy-limit20"),
                "--spec",
                "default",
                "--allow-limit",
                "--no-html",
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 0
    )
    assert (tmp_path / "b" / "leaderboard.md").exists()


# ---- scores, intervals, ties, extremes ------------------------------------------------------


def test_extremes_ties_and_missing_samples(synth, tmp_path):
    synth.make_run(
        tmp_path,
        "all-right",
        {"t_a": synth.outcomes(50, 50), "t_b": synth.outcomes(50, 50), "t_c": synth.outcomes(50, 50)},
    )
    synth.make_run(
        tmp_path,
        "all-wrong",
        {"t_a": synth.outcomes(50, 0), "t_b": synth.outcomes(50, 0), "t_c": synth.outcomes(50, 0)},
    )
    synth.make_run(
        tmp_path, "tie-1", {"t_a": synth.outcomes(50, 25), "t_b": synth.outcomes(50, 25), "t_c": synth.outcomes(50, 25)}
    )
    synth.make_run(
        tmp_path,
        "tie-2",
        {"t_a": synth.outcomes(50, 25), "t_b": synth.outcomes(50, 25), "t_c": synth.outcomes(50, 25)},
        samples=False,
    )
    board = read_board(build([tmp_path], spec=SMALL, out=tmp_path / "b", html=False))
    rows = {r["model"]: r for r in board["rows"]}
    top, bottom = rows["all-right"]["tasks"]["t_a"], rows["all-wrong"]["tasks"]["t_a"]
    # Wilson stays informative at 0% and 100% (a stderr interval would collapse to a point)
    assert top["value"] == 1.0 and top["high"] == 1.0 and 0.85 < top["low"] < 1.0
    assert bottom["value"] == 0.0 and bottom["low"] == 0.0 and 0.0 < bottom["high"] < 0.15
    assert rows["tie-1"]["overall"]["value"] == rows["tie-2"]["overall"]["value"] == 0.5
    assert rows["tie-2"]["tasks"]["t_a"]["method"] == "stderr"  # no samples file
    assert rows["tie-1"]["overall"]["method"] == rows["tie-2"]["overall"]["method"] == "mover"
    # a one-task domain is its task; the all-wrong model's domains keep an upper end above 0
    assert rows["tie-1"]["domains"]["problem_solving"] == rows["tie-1"]["tasks"]["t_c"]
    wrong = rows["all-wrong"]
    assert wrong["domains"]["commonsense"]["low"] == 0.0 and wrong["domains"]["commonsense"]["high"] > 0.04
    assert wrong["overall"]["high"] > 0.04 and rows["all-right"]["overall"]["low"] < 0.96
    assert [r["model"] for r in board["rows"]] == ["all-right", "tie-1", "tie-2", "all-wrong"]
    assert [(r["rank"], r["tied"]) for r in board["rows"]] == [(1, False), (2, True), (2, True), (4, False)]
    assert any("prompts not verified" in n and "tie-2" in n for n in board["notes"])


def test_a_model_missing_a_task_gets_no_overall_and_is_listed_last(synth, tmp_path):
    synth.make_run(
        tmp_path, "full", {"t_a": synth.outcomes(20, 5), "t_b": synth.outcomes(20, 5), "t_c": synth.outcomes(20, 5)}
    )
    synth.make_run(tmp_path, "partial", {"t_a": synth.outcomes(20, 20), "t_c": synth.outcomes(20, 20)})
    board = read_board(build([tmp_path], spec=SMALL, out=tmp_path / "b", html=False))
    assert [r["model"] for r in board["rows"]] == ["full", "partial"]
    partial = board["rows"][1]
    assert partial["overall"]["value"] is None and partial["rank"] is None
    assert partial["domains"]["commonsense"]["value"] is None
    assert partial["domains"]["problem_solving"]["value"] == 1.0
    assert any("partial" in n and "missing t_b" in n for n in board["notes"])


def test_runs_from_several_folders_and_globs_join(synth, tmp_path):
    synth.make_run(tmp_path / "machine1", "m1", {"t_a": synth.outcomes(10, 3), "t_b": synth.outcomes(10, 3)})
    synth.make_run(tmp_path / "machine1", "m1", {"t_c": synth.outcomes(10, 4)}, stamp="2026-01-02T00-00-00.0")
    synth.make_run(
        tmp_path / "machine2",
        "m2",
        {"t_a": synth.outcomes(10, 9), "t_b": synth.outcomes(10, 9), "t_c": synth.outcomes(10, 9)},
    )
    synth.make_run(tmp_path / "machine2", "m2-other", {"t_a": [1.0]}, cost=synth.cost_record("m2-other", 1, 1))
    (tmp_path / "machine2" / "m2-other" / "results_2026-01-01T00-00-00.000000.json").rename(
        tmp_path / "machine2" / "m2-other" / "renamed.json"
    )  # not a results_* name: a pattern skips it
    board = read_board(
        build(
            [tmp_path / "machine1", str(tmp_path / "machine2" / "**" / "*.json")],
            spec=SMALL,
            out=tmp_path / "b",
            html=False,
        )
    )
    assert sorted(r["model"] for r in board["rows"]) == ["m1", "m2"]  # sidecars and samples are not runs
    m1 = next(r for r in board["rows"] if r["model"] == "m1")
    assert len(m1["provenance"]["files"]) == 2
    assert m1["overall"]["value"] == pytest.approx(((0.3 + 0.3) / 2 + 0.4) / 2)


def test_cost_columns_pareto_and_hardware_profile(synth, tmp_path):
    tasks = lambda k: {"t_a": synth.outcomes(40, k), "t_b": synth.outcomes(40, k), "t_c": synth.outcomes(40, k)}  # noqa: E731
    synth.make_run(tmp_path, "fast", tasks(20), cost=synth.cost_record("fast", 5.0, 200_000_000))
    synth.make_run(tmp_path, "good", tasks(30), cost=synth.cost_record("good", 20.0, 900_000_000), cost_in_config=True)
    synth.make_run(tmp_path, "worse", tasks(10), cost=synth.cost_record("worse", 30.0, 950_000_000))
    gpu = synth.cost_record("gpu", 1.0, 100)
    gpu["model"]["backend"] = "vllm"
    synth.make_run(tmp_path, "gpu", tasks(35), cost=gpu)
    board = read_board(build([tmp_path], spec=SMALL, out=tmp_path / "b", html=False))
    rows = {r["model"]: r for r in board["rows"]}
    assert rows["fast"]["cost"]["decode_ms_per_token"] == {"value": 5.0, "source": "run"}
    assert rows["good"]["cost"]["peak_memory_bytes"]["value"] == 900_000_000
    assert rows["fast"]["cost"]["ttft_ms"]["value"] is None  # null in the record stays missing
    assert rows["fast"]["cost"]["energy_per_token_j"]["value"] is None
    assert rows["gpu"]["cost"]["decode_ms_per_token"]["value"] is None  # other hardware: not shown
    assert any("gpu" in n and "other hardware" in n for n in board["notes"])
    assert rows["fast"]["pareto"]["latency"] and rows["good"]["pareto"]["latency"]
    assert rows["worse"]["pareto"]["latency"] is False and rows["gpu"]["pareto"]["latency"] is None
    assert rows["good"]["efficiency"]["score_per_gb"] == pytest.approx(0.75 / 0.9)


def test_load_run_reads_samples_and_sidecar(synth, tmp_path):
    path = synth.make_run(tmp_path, "m", {"t_a": [1, 0, 1, 1]}, cost=synth.cost_record("m", 3.0, 10))
    run = load_run(path)
    assert run.cost.run_figure("decode_ms_per_token") == 3.0 and run.cost_source.startswith("sidecar")
    ds = run.tasks["t_a"].samples()
    assert ds.doc_ids == [0, 1, 2, 3] and ds.numeric("acc") == [1.0, 0.0, 1.0, 1.0]
    assert set(ds.n_choices.values()) == {4}


def test_latency_axis_falls_back_to_prefill_for_scoring_only_runs(synth, tmp_path):
    # multiple-choice runs never decode: decode ms/token and ttft are null in their records
    for name, k, prefill in (("slow", 30, 50.0), ("quick", 20, 200.0), ("worse", 10, 100.0)):
        rec = synth.cost_record(name, None, 300_000_000, prefill_tok_s=prefill)
        synth.make_run(tmp_path, name, {t: synth.outcomes(40, k) for t in ("t_a", "t_b", "t_c")}, cost=rec)
    board = read_board(build([tmp_path], spec=SMALL, out=tmp_path / "b"))
    axis = board["pareto_axes"]["latency"]
    assert axis["key"] == "prefill_tok_s" and axis["values"] == {"slow": 20.0, "quick": 5.0, "worse": 10.0}
    assert {r["model"]: r["pareto"]["latency"] for r in board["rows"]} == {"slow": True, "quick": True, "worse": False}
    html = (tmp_path / "b" / "index.html").read_text()
    assert "Score vs prefill time" in html and html.count('id="points-') == 4  # 2 plots x 2 groups


def test_board_from_real_llamacpp_runs_shows_their_cost_records(synth, tmp_path):
    """SmolLM2-135M and Gemma-3-270M on llama.cpp (lite tasks, --limit 30): cost from config.slm_cost."""
    runs = synth.FIXTURES / "llamacpp-limit30"
    out = build([runs], spec="lite", out=tmp_path / "b", allow_limit=True)
    board = read_board(out)
    assert board["smoke"] and {c["task"] for c in board["columns"]} == {"slm_arc_easy_lite", "slm_boolq_lite"}
    assert board["pareto_axes"]["latency"]["key"] == "prefill_tok_s"  # scoring only: nothing decoded
    for path in sorted(runs.rglob("results_*.json")):
        res = json.loads(path.read_text())
        rec = res["config"]["slm_cost"]
        row = next(r for r in board["rows"] if r["model"] == rec["model"]["name"])
        for task in ("slm_arc_easy_lite", "slm_boolq_lite"):
            assert row["tasks"][task]["value"] == pytest.approx(res["results"][task]["acc,none"])
        cost = {k: v["value"] for k, v in row["cost"].items()}
        assert cost["peak_memory_bytes"] == rec["run"]["peak_rss_bytes"]
        assert cost["prefill_tok_s"] == pytest.approx(rec["run"]["prefill_tok_s"])
        assert cost["wall_s"] == pytest.approx(rec["run"]["wall_s"])
        assert cost["model_bytes"] == rec["model"]["file_bytes"]
        for key in ("decode_ms_per_token", "ttft_ms", "energy_per_token_j"):
            assert cost[key] is None and rec["run"][key] is None  # not measured: shown as —
        assert row["provenance"]["hardware"] == rec["hardware"]
        assert row["provenance"]["files"][0]["cost_source"] == "results config"
    html = (out / "index.html").read_text()
    assert html.count("<svg") == 2
