"""`slm-suite run` in hostile places, and re-runs into one folder.

The output path is checked before the evaluation (a file, a path below a file, a read-only or
immutable folder, a user's file where the run's board goes); what lm-eval's tracker could not
save (it only logs it) is an error naming the file, never a success; a run repeated into its
folder leaves a folder the board reads (the newest run of a model and task is shown, the
superseded file named, ``--strict`` refuses) and, answered from the store, reuses the bench.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest


def _helpers():
    spec = importlib.util.spec_from_file_location("hostile_io", Path(__file__).with_name("hostile_io.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


io = _helpers()
FIXTURES, SMOL, GEMMA, BOARD, GATE = io.FIXTURES, io.SMOL, io.GEMMA, io.BOARD, io.GATE
READ_ONLY, read_only_folder = io.READ_ONLY, io.read_only_folder
small_mount, fill_disk = io.small_mount, io.fill_disk
user_notes, succeeded, refused, no_temp_files = io.user_notes, io.succeeded, io.refused, io.no_temp_files


@pytest.fixture()
def runs(tmp_path) -> Path:
    return io.copy_runs(tmp_path)


# ---- slm-suite run: the output path is checked before the evaluation ------------------------------


def run_cli(slm_cli, output_path, *extra):
    return slm_cli(
        "run", "--model", SMOL, "--tasks", "slm_arc_easy_lite", "--limit", "1", "--output-path", output_path, *extra
    )


@pytest.mark.parametrize("case", ["file", "below-file", "json-name", "dangling-link", "model-folder-is-a-file"])
def test_run_refuses_an_output_path_that_is_not_a_folder(slm_cli, tmp_path, user_files, case, monkeypatch):
    import slm_tasks.api as api

    monkeypatch.setattr(api, "evaluate", lambda *a, **k: pytest.fail("the evaluation started"))
    (tmp_path / "file.txt").write_text("a file\n")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / SMOL).write_text("where lm-eval would put the model's folder\n")
    path = {
        "file": tmp_path / "file.txt",
        "below-file": tmp_path / "file.txt" / "out",
        "json-name": tmp_path / "out.json",
        "dangling-link": tmp_path / "dangling",
        "model-folder-is-a-file": tmp_path / "runs",
    }[case]
    snap = user_files(tmp_path)
    res = run_cli(slm_cli, path, "--no-leaderboard")
    refused(res, tmp_path)
    assert "results:" not in res.out
    snap.assert_kept()
    assert not (tmp_path / "gone").exists() and not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("kind", READ_ONLY)
@pytest.mark.parametrize("out_rel", ["", "new/sub"])
def test_run_refuses_a_read_only_output_folder_before_the_evaluation(
    slm_cli, tmp_path, user_files, out_rel, kind, monkeypatch
):
    import slm_tasks.api as api

    monkeypatch.setattr(api, "evaluate", lambda *a, **k: pytest.fail("the evaluation started"))
    with read_only_folder(tmp_path / "ro", kind) as (ro, cause):
        snap = user_files(ro)
        res = run_cli(slm_cli, ro / out_rel if out_rel else ro, "--no-leaderboard")
        refused(res, ro, cause, "--output-path")
        snap.assert_kept()


def test_run_refuses_a_users_file_where_its_board_goes(slm_cli, tmp_path, user_files, monkeypatch):
    import slm_tasks.api as api

    monkeypatch.setattr(api, "evaluate", lambda *a, **k: pytest.fail("the evaluation started"))
    (tmp_path / "out" / "leaderboard").mkdir(parents=True)
    (tmp_path / "out" / "leaderboard" / "leaderboard.md").write_text("mine\n")
    snap = user_files(tmp_path)
    res = run_cli(slm_cli, tmp_path / "out")
    refused(res, "leaderboard.md", "not written by slm-suite", "--no-leaderboard")
    snap.assert_kept()


# ---- slm-suite run: what lm-eval could not save is an error, not a success ---------------------


def tiny_results() -> tuple[dict, dict]:
    sample = {
        "doc_id": 0,
        "doc": {},
        "target": "0",
        "arguments": [["q", " a"]],
        "resps": [[[-1.0, True]]],
        "filtered_resps": [[-1.0, True]],
        "filter": "none",
        "metrics": ["acc"],
        "doc_hash": "d",
        "prompt_hash": "p",
        "target_hash": "t",
        "acc": 1.0,
    }
    results = {"results": {"t": {"acc,none": 1.0}}, "configs": {"t": {"task": "t"}}, "versions": {"t": 1}}
    return results, {"t": [sample] * 50}


def tracker_for(path: Path):
    from lm_eval.loggers import EvaluationTracker

    tracker = EvaluationTracker(output_path=str(path))
    tracker.general_config_tracker.log_experiment_args(
        model_source="slm-llamacpp",
        model_args="model=m",
        system_instruction=None,
        chat_template=None,
        fewshot_as_multiturn=False,
    )
    return tracker


def test_save_reports_the_files_lm_eval_wrote(tmp_path):
    from slm_tasks.run_output import save

    results, samples = tiny_results()
    path = save(tracker_for(tmp_path / "out"), results, samples)
    assert path.parent == tmp_path / "out" / "m" and json.loads(path.read_text())["results"]
    (samples_file,) = path.parent.glob("samples_t_*.jsonl")
    assert len(samples_file.read_text().splitlines()) == 50


@pytest.mark.parametrize("fill", ["all", "after-results"])
def test_save_on_a_full_disk_is_one_error_not_a_silent_success(tmp_path, fill):
    from slm_tasks.leaderboards.outputs import OutputError
    from slm_tasks.run_output import save

    results, samples = tiny_results()
    with small_mount(tmp_path / "small", size="64k") as small:
        tracker = tracker_for(small / "out")
        (small / "out" / "m").mkdir(parents=True)
        fill_disk(small, leave=4096 * (2 if fill == "after-results" else 0))
        with pytest.raises(OutputError) as err:
            save(tracker, results, samples)
        msg = str(err.value)
        assert "\n" not in msg and str(small / "out" / "m") in msg and "--output-path" in msg
        assert f"could not save the {'samples' if fill == 'after-results' else 'results'}" in msg
        assert "No space left on device" in msg
        assert not list((small / "out").rglob("*.json*")), "a half-written file of the run was left"


def test_cost_record_write_failure_leaves_no_temp_file(tmp_path):
    from slm_tasks.leaderboards.outputs import OutputError
    from slm_tasks.run_output import write_text_atomic

    with small_mount(tmp_path / "small", size="64k") as small:
        with pytest.raises(OutputError) as err:
            write_text_atomic(small / "results_x.cost.json", "x" * 200_000)
        assert "No space left on device" in str(err.value) and "results_x.cost.json" in str(err.value)
        assert os.listdir(small) == []


# ---- re-runs into one folder ----------------------------------------------------------------------


def rerun(folder: Path, stamp: str, date_shift: float, drop_task: str | None = None) -> Path:
    """A copy of the model's run in ``folder`` as if made again: new time stamp, later date."""
    (old,) = folder.glob("results_*[0-9].json")
    data = json.loads(old.read_text())
    data["date"] = float(data["date"]) + date_shift
    if drop_task:
        for key in ("results", "configs", "versions", "n-shot", "higher_is_better", "n-samples", "task_hashes"):
            (data.get(key) or {}).pop(drop_task, None)
    new = folder / f"results_{stamp}.json"
    new.write_text(json.dumps(data))
    old_stamp = old.stem.removeprefix("results_")
    for samples in folder.glob(f"samples_*_{old_stamp}.jsonl"):
        if drop_task is None or drop_task not in samples.name:
            shutil.copy(samples, folder / samples.name.replace(old_stamp, stamp))
    return new


def test_a_rerun_into_the_same_folder_shows_the_newest_and_names_the_superseded(slm_cli, runs, tmp_path):
    (old,) = (runs / SMOL).glob("results_*[0-9].json")
    new = rerun(runs / SMOL, "2026-12-01T10-00-00.000000", 3600)
    out = tmp_path / "board"
    res = slm_cli("leaderboard", runs, "--spec", "lite", "--allow-limit", "--out", out)
    assert res.code == 0, res.err
    board = json.loads((out / "leaderboard.json").read_text())
    assert sorted(r["model"] for r in board["rows"]) == [GEMMA, SMOL]
    (note,) = [n for n in board["notes"] if "superseded" in n]
    assert f"{SMOL}/{old.name}" in note and f"{SMOL}/{new.name}" in note and str(tmp_path) not in note
    assert f"{SMOL}/{old.name}" in (out / "leaderboard.md").read_text()


def test_the_run_date_decides_not_the_file_name(runs):
    from slm_tasks.leaderboards.ingest import load_runs
    from slm_tasks.leaderboards.rerun import newest_runs

    (old,) = (runs / SMOL).glob("results_*[0-9].json")
    # named as if later, but made an hour earlier
    earlier = rerun(runs / SMOL, "2027-01-01T00-00-00.000000", -3600)
    for inputs in ([runs], [earlier, old], [old, earlier]):
        kept, notes = newest_runs(load_runs(inputs))
        assert [r.path.name for r in kept if r.model == SMOL] == [old.name]
        assert len(notes) == 1 and notes[0].startswith(f"{SMOL}/{earlier.name}: superseded")


def test_a_partial_rerun_supersedes_only_its_tasks(slm_cli, runs, tmp_path):
    (old,) = (runs / SMOL).glob("results_*[0-9].json")
    rerun(runs / SMOL, "2026-12-01T10-00-00.000000", 3600, drop_task="slm_boolq_lite")
    out = tmp_path / "board"
    res = slm_cli("leaderboard", runs, "--spec", "lite", "--allow-limit", "--out", out)
    assert res.code == 0, res.err
    board = json.loads((out / "leaderboard.json").read_text())
    (note,) = [n for n in board["notes"] if "superseded" in n]
    assert note.startswith(f"{SMOL}/{old.name}: task slm_arc_easy_lite superseded")
    assert {c["task"] for c in board["columns"]} == {"slm_arc_easy_lite", "slm_boolq_lite"}


def test_strict_refuses_reruns_naming_the_files(slm_cli, runs, tmp_path, user_files):
    out = tmp_path / "board"
    assert slm_cli("leaderboard", runs, "--spec", "lite", "--allow-limit", "--out", out).code == 0
    (old,) = (runs / SMOL).glob("results_*[0-9].json")
    new = rerun(runs / SMOL, "2026-12-01T10-00-00.000000", 3600)
    snap = user_files(tmp_path)
    res = slm_cli("leaderboard", runs, "--spec", "lite", "--allow-limit", "--strict", "--out", out)
    refused(res, "--strict", f"{SMOL}/{old.name}", f"{SMOL}/{new.name}", "slm_arc_easy_lite")
    snap.assert_kept()


def test_the_runs_own_board_survives_a_rerun(runs, tmp_path):
    from slm_tasks.api import _board

    rerun(runs / SMOL, "2026-12-01T10-00-00.000000", 3600)
    user_notes(runs / "leaderboard")
    board_dir, _ = _board(runs, "lite", limit=30)
    assert (board_dir / "notes.txt").read_text() == "my notes\n"
    rows = json.loads((board_dir / "leaderboard.json").read_text())["rows"]
    assert sorted(r["model"] for r in rows) == [GEMMA, SMOL]


# ---- a run answered from the store reuses the bench of the same model on the same machine ----------


def cost_record(tmp_path: Path, folder: str, stamp: str, sidecar: bool = False, **changes) -> dict:
    """A results file with a benched cost record in its config (as ``slm-suite run`` stores it),
    or with ``sidecar``, beside it as ``.cost.json`` (as earlier versions also wrote it)."""
    record = json.loads((FIXTURES / "cost-record.example.json").read_text())
    record["bench"] = {
        "protocol": "survey-p50-g50-c2048",
        "runs": 3,
        "tg_ms_per_token": 9.0,
        "stamp": stamp,
        "n_threads": record["hardware"]["threads"],
    }
    for key, value in changes.items():
        part, _, field = key.partition("__")
        record[part][field] = value
    path = tmp_path / folder / f"results_{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"results": {}, "config": {} if sidecar else {"slm_cost": record}}))
    if sidecar:
        path.with_suffix(".cost.json").write_text(json.dumps(record))
    return record


def this_run(**run):
    from slm_tasks.results.cost_record import CostRecord

    record = json.loads((FIXTURES / "cost-record.example.json").read_text())
    record["run"].update({"requests": 0, "reused_requests": 40, **run})
    return CostRecord.from_json(record, "this run")


def test_a_run_from_the_store_reuses_the_newest_matching_bench(tmp_path):
    from slm_tasks.run_output import reusable_bench

    cost_record(tmp_path, "m", "2026-01-01T00-00-00.000000")
    cost_record(tmp_path, "m", "2026-02-01T00-00-00.000000")
    cost_record(tmp_path, "m", "2026-03-01T00-00-00.000000", hardware__cpu="another CPU")
    bench, source = reusable_bench(tmp_path, this_run())
    assert bench["stamp"] == "2026-02-01T00-00-00.000000"
    assert source == "m/results_2026-02-01T00-00-00.000000.json"
    # a record of an earlier version, in a sidecar only, is read too
    cost_record(tmp_path, "m", "2026-02-15T00-00-00.000000", sidecar=True)
    bench, source = reusable_bench(tmp_path, this_run())
    assert bench["stamp"] == "2026-02-15T00-00-00.000000"
    assert source == "m/results_2026-02-15T00-00-00.000000.cost.json"


@pytest.mark.parametrize(
    "change",
    [
        {"hardware__threads": 1},
        {"model__file_bytes": 1},
        {"model__quant": "Q8_0"},
        {"model__name": "other"},
        {"software__backend_version": "0.0.1"},
    ],
)
def test_a_bench_of_another_model_or_machine_is_not_reused(tmp_path, change):
    from slm_tasks.run_output import reusable_bench

    cost_record(tmp_path, "m", "2026-01-01T00-00-00.000000", **change)
    assert reusable_bench(tmp_path, this_run()) is None


@pytest.mark.parametrize("run", [{"requests": 3}, {"reused_requests": 0}])
def test_a_run_that_computed_requests_is_benched_again(tmp_path, run):
    from slm_tasks.run_output import reusable_bench

    cost_record(tmp_path, "m", "2026-01-01T00-00-00.000000")
    assert reusable_bench(tmp_path, this_run(**run)) is None


def test_an_unreadable_cost_record_is_passed_over(tmp_path):
    from slm_tasks.run_output import reusable_bench

    cost_record(tmp_path, "m", "2026-01-01T00-00-00.000000")
    (tmp_path / "m" / "results_2026-05-01T00-00-00.000000.json").write_text("{ broken")
    os.mkfifo(tmp_path / "m" / "results_2026-06-01T00-00-00.000000.json")
    (tmp_path / "m" / "results_2026-07-01T00-00-00.000000.json").write_text('{"results": {}}')
    (tmp_path / "m" / "results_2026-07-01T00-00-00.000000.cost.json").write_text('{"schema": "other/9"}')
    bench, _ = reusable_bench(tmp_path, this_run())
    assert bench["stamp"] == "2026-01-01T00-00-00.000000"


# ---- real runs of the embedded model (a one-document task; answers kept in a store) ----------------


def real_run(out: Path, store: Path, **kwargs):
    from slm_tasks.api import run

    return run(
        tasks=["slm_arc_easy_lite"],
        limit=1,
        output_path=out,
        model_args={"store": str(store)},
        **{"bench_runs": 0, "leaderboard": False, **kwargs},
    )


def test_run_repeated_into_its_folder_reuses_the_bench_and_the_folder_still_builds(
    mirror_env, tmp_path, slm_cli, monkeypatch
):
    import slm_tasks.adapters.bench as bench_mod

    out, store = tmp_path / "out", tmp_path / "store.sqlite"
    first = real_run(out, store)
    # the bench of an earlier run of this model on this machine (as `slm-suite run` records it)
    assert not first.results_file.with_suffix(".cost.json").exists()  # the record is stored once
    saved = json.loads(first.results_file.read_text())
    record = saved["config"]["slm_cost"]
    record["bench"] = {
        "protocol": "survey-p50-g50-c2048",
        "runs": 3,
        "tg_ms_per_token": 12.5,
        "n_threads": record["hardware"]["threads"],
    }
    first.results_file.write_text(json.dumps(saved))
    monkeypatch.setattr(bench_mod, "bench", lambda *a, **k: pytest.fail("benched again"))
    second = real_run(out, store, bench_runs=3, leaderboard=True)  # every answer from the store
    run_cost = second.results["config"]["slm_cost"]["run"]
    assert run_cost["requests"] == 0 and run_cost["reused_requests"] > 0
    assert json.loads(second.results_file.read_text())["config"]["slm_cost"]["bench"] == record["bench"]
    assert second.cost.bench == record["bench"]
    (note,) = [n for n in second.notes if "runtime bench" in n]
    assert first.results_file.name in note
    # both runs are in the folder; the board of that folder shows the newest and names the other
    res = slm_cli("leaderboard", out, "--spec", "lite", "--allow-limit", "--out", tmp_path / "board")
    assert res.code == 0, res.err
    notes = json.loads((tmp_path / "board" / "leaderboard.json").read_text())["notes"]
    assert any(
        n.startswith(f"{SMOL}/{first.results_file.name}: superseded by the newer run {SMOL}/{second.results_file.name}")
        for n in notes
    )
    assert (
        slm_cli("leaderboard", out, "--spec", "lite", "--allow-limit", "--strict", "--out", tmp_path / "board").code
        == 2
    )


def test_a_run_whose_results_cannot_be_saved_fails_with_one_line(mirror_env, tmp_path, user_files):
    from slm_tasks.leaderboards.outputs import OutputError

    with small_mount(tmp_path / "small", size="64k") as small:
        (small / "notes.txt").write_text("my notes\n")
        fill_disk(small, leave=0)  # creating a file still works: the check before the run passes
        snap = user_files(small)
        with pytest.raises(OutputError) as err:  # the CLI prints it as one line, exit 2
            real_run(small / "out", tmp_path / "store.sqlite")
        msg = str(err.value)
        assert "\n" not in msg and str(small / "out" / SMOL) in msg and "--output-path" in msg
        assert "could not save the results" in msg
        snap.assert_kept(written={"out", f"out/{SMOL}"})
        assert not list((small / "out").rglob("*.json*")), "a half-written file of the run was left"
