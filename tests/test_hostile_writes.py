"""Hostile output folders: no command deletes, moves or rewrites a file it did not write.

`slm-suite leaderboard --out`, `slm-suite gate --out` and `slm-suite run --output-path` meet
folders holding the user's notes, the current folder, the runs folder itself, a same-named
file of the user's, a file or a read-only mount where a folder should be, a full disk. After
each: the user's files are byte-identical (``user_files``), the exit code is 0 or 2, and a
failure is one stderr line naming the path. Re-runs into one folder: the newest run of a model
and task is shown, the superseded file named, ``--strict`` refuses.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from slm_tasks.leaderboards.outputs import MANIFEST

FIXTURES = Path(__file__).parent / "fixtures" / "results"
SMOL = "smollm2-135m"
GEMMA = "gemma3-270m"
BOARD = {"leaderboard.json", "leaderboard.csv", "leaderboard.md", "index.html"}
GATE = {"gate.md", "gate.json", "gate.junit.xml"}
POLICY = ("schema: slm-suite.gate-policy/1\nspec: lite\nallow_limit: true\n"
          "margins: {default: 0.05}\nbudgets: {}\n")


@pytest.fixture()
def runs(tmp_path) -> Path:
    """The committed llama.cpp runs (results + samples of two models), copied."""
    dest = tmp_path / "runs"
    shutil.copytree(FIXTURES / "llamacpp-limit30", dest)
    return dest


@pytest.fixture()
def policy(tmp_path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


@pytest.fixture()
def command(request, slm_cli, runs, policy):
    """``command(out)`` runs the board or the gate with ``--out out``; returns (result, names)."""
    kind = request.param

    def run(out):
        if kind == "board":
            return slm_cli("leaderboard", runs, "--spec", "lite", "--allow-limit", "--out", out), BOARD
        return slm_cli("gate", "--baseline", runs / SMOL, "--candidate", runs / GEMMA, "--policy", policy,
                       "--out", out, "--quiet"), GATE

    run.kind = kind
    return run


both = pytest.mark.parametrize("command", ["board", "gate"], indirect=True)


def user_notes(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("my notes\n")
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "draft.md").write_bytes(b"\x00binary\xff")
    (folder / "link-to-notes").symlink_to("notes.txt")


def succeeded(res, kind) -> None:
    # the gate's exit code is its verdict (0 pass, 1 fail); 2 would be a refusal
    assert res.code in ((0,) if kind == "board" else (0, 1)), res.err
    assert "error" not in res.err


def refused(res, *fragments) -> str:
    assert res.code == 2, (res.code, res.out, res.err)
    (line,) = res.error_lines
    assert line.startswith("slm-suite: error: ")
    for fragment in fragments:
        assert str(fragment) in line, line
    assert "Traceback" not in res.err
    return line


def no_temp_files(folder: Path) -> None:
    left = [p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or ".slm-suite-probe-" in p.name]
    assert not left, left


# ---- the folder holds the user's files --------------------------------------------------------

@both
def test_user_files_beside_the_outputs_are_kept(command, tmp_path, user_files):
    out = tmp_path / "out"
    user_notes(out)
    snap = user_files(tmp_path)
    res, names = command(out)
    succeeded(res, command.kind)
    snap.assert_kept(written={*names, MANIFEST})
    assert names <= {p.name for p in out.iterdir()}
    no_temp_files(tmp_path)


@both
def test_out_dot_writes_into_the_current_folder_and_keeps_it(command, tmp_path, monkeypatch, user_files):
    here = tmp_path / "here"
    user_notes(here)
    monkeypatch.chdir(here)
    snap = user_files(tmp_path)
    res, names = command(".")
    succeeded(res, command.kind)
    snap.assert_kept(written={f"here/{n}" for n in (*names, MANIFEST)})
    assert (here / "notes.txt").read_text() == "my notes\n"


@both
def test_out_is_the_runs_folder_itself(command, runs, user_files, slm_cli):
    snap = user_files(runs)
    res, names = command(runs)
    succeeded(res, command.kind)
    snap.assert_kept(written={*names, MANIFEST})
    # the runs are still all there: a board from that folder builds again, in place
    again = slm_cli("leaderboard", runs, "--spec", "lite", "--allow-limit", "--out", runs)
    assert again.code == 0, again.err


@both
def test_out_inside_the_inputs_twice(command, runs, user_files):
    snap = user_files(runs)
    for _ in range(2):
        res, names = command(runs / SMOL / "report")
        succeeded(res, command.kind)
    snap.assert_kept(written={f"{SMOL}/report", *(f"{SMOL}/report/{n}" for n in (*names, MANIFEST))})


@both
def test_a_same_named_file_of_the_user_is_refused(command, tmp_path, user_files):
    out = tmp_path / "out"
    user_notes(out)
    mine = "leaderboard.md" if command.kind == "board" else "gate.md"
    (out / mine).write_text("# my own page\n")
    snap = user_files(tmp_path)
    res, _ = command(out)
    refused(res, out / mine, "not written by slm-suite", "--out")
    snap.assert_kept()
    assert not (out / MANIFEST).exists()
    no_temp_files(tmp_path)


@both
def test_a_link_in_place_of_an_output_is_refused_even_when_listed(command, tmp_path, user_files):
    out = tmp_path / "out"
    res, names = command(out)
    succeeded(res, command.kind)
    target = tmp_path / "elsewhere.md"
    target.write_text("the user's file the link points at\n")
    name = sorted(names)[0]
    (out / name).unlink()
    (out / name).symlink_to(target)
    snap = user_files(tmp_path)
    res, _ = command(out)
    refused(res, out / name, "--out")
    snap.assert_kept()


# ---- the folder is not a writable folder --------------------------------------------------------

@both
def test_out_is_an_existing_file(command, tmp_path, user_files):
    path = tmp_path / "report.txt"
    path.write_text("not a folder\n")
    snap = user_files(tmp_path)
    res, _ = command(path)
    refused(res, path, "not a folder")
    snap.assert_kept()


@both
def test_out_below_a_file(command, tmp_path, user_files):
    path = tmp_path / "report.txt"
    path.write_text("not a folder\n")
    snap = user_files(tmp_path)
    res, _ = command(path / "sub")
    refused(res, path / "sub", "is a file")
    snap.assert_kept()


@both
def test_out_is_a_link_to_a_folder(command, tmp_path, user_files):
    real = tmp_path / "real"
    user_notes(real)
    (tmp_path / "link").symlink_to(real)
    snap = user_files(tmp_path)
    res, names = command(tmp_path / "link")
    succeeded(res, command.kind)
    snap.assert_kept(written={f"real/{n}" for n in (*names, MANIFEST)})
    assert os.readlink(tmp_path / "link") == str(real) and names <= {p.name for p in real.iterdir()}


@both
def test_out_is_a_dangling_link(command, tmp_path, user_files):
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    snap = user_files(tmp_path)
    res, _ = command(tmp_path / "link")
    refused(res, tmp_path / "link", "missing folder")
    snap.assert_kept()
    assert not (tmp_path / "gone").exists()


@contextlib.contextmanager
def small_mount(where: Path, size: str = "64k", read_only: bool = False):
    """A real tmpfs (root only): a full disk or a read-only folder even for root."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill_disk(folder: Path, leave: int) -> None:
    """Fill the mount of ``folder`` with a file of the user's, leaving ``leave`` bytes free."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"x" * 4096)
        os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    finally:
        os.close(fd)


def remount_read_only(where: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True, capture_output=True)


READ_ONLY = ["tmpfs", "immutable", "mode"]


@contextlib.contextmanager
def read_only_folder(where: Path, kind: str):
    """A folder of the user's notes that cannot be written, and the cause the error must name:
    a read-only mount or an immutable folder (these hold for root too), or mode 0555 (only for
    other users: root writes there anyway)."""
    if kind == "tmpfs":
        with small_mount(where) as folder:
            user_notes(folder)
            remount_read_only(folder)
            yield folder, "Read-only file system"
        return
    if kind == "mode" and os.geteuid() == 0:
        pytest.skip("root writes into a folder of mode 0555; the tmpfs and immutable variants cover root")
    user_notes(where)
    if kind == "immutable":
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(where)],
                                                            capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available for this folder")
        cause = "Operation not permitted"
    else:
        where.chmod(0o555)
        cause = "Permission denied"
    try:
        yield where, cause
    finally:
        if kind == "immutable":
            subprocess.run(["chattr", "-i", str(where)], capture_output=True)
        else:
            where.chmod(0o755)


@both
@pytest.mark.parametrize("kind", READ_ONLY)
@pytest.mark.parametrize("out_rel", ["", "new/sub"])
def test_read_only_folder(command, tmp_path, user_files, out_rel, kind):
    with read_only_folder(tmp_path / "ro", kind) as (ro, cause):
        snap = user_files(ro)
        res, _ = command(ro / out_rel if out_rel else ro)
        line = refused(res, ro, cause)
        assert "--out" in line
        snap.assert_kept()


@both
def test_full_disk_leaves_the_previous_outputs_and_no_temp_files(command, tmp_path, user_files):
    with small_mount(tmp_path / "small", size="1m") as small:
        out = small / "out"
        res, names = command(out)
        succeeded(res, command.kind)
        (small / "notes.txt").write_text("my notes\n")
        fill_disk(small, leave=4096)  # one page: the next set of files cannot complete
        snap = user_files(small)
        res, _ = command(out)
        refused(res, out, "No space left on device")
        snap.assert_kept()
        no_temp_files(small)


# ---- re-building into the same folder -----------------------------------------------------------

@both
def test_a_second_write_replaces_only_its_own_files(command, tmp_path, user_files):
    out = tmp_path / "out"
    res, names = command(out)
    succeeded(res, command.kind)
    user_notes(out)
    snap = user_files(tmp_path)
    res, _ = command(out)
    succeeded(res, command.kind)
    snap.assert_kept(written={f"out/{n}" for n in (*names, MANIFEST)})


def test_board_and_gate_share_a_folder_without_removing_each_other(slm_cli, runs, policy, tmp_path):
    out = tmp_path / "reports"
    assert slm_cli("leaderboard", runs, "--spec", "lite", "--allow-limit", "--out", out).code == 0
    gated = slm_cli("gate", "--baseline", runs / SMOL, "--candidate", runs / GEMMA, "--policy", policy,
                    "--out", out, "--quiet")
    assert gated.code in (0, 1), gated.err
    assert slm_cli("leaderboard", runs, "--spec", "lite", "--allow-limit", "--out", out).code == 0
    assert {p.name for p in out.iterdir()} == BOARD | GATE | {MANIFEST}


def test_no_html_removes_only_the_earlier_boards_page(slm_cli, runs, tmp_path, user_files):
    out = tmp_path / "out"
    assert slm_cli("leaderboard", runs, "--spec", "lite", "--allow-limit", "--out", out).code == 0
    user_notes(out)
    snap = user_files(out)
    res = slm_cli("leaderboard", runs, "--spec", "lite", "--allow-limit", "--no-html", "--out", out)
    assert res.code == 0, res.err
    snap.assert_kept(written={*BOARD, MANIFEST})
    assert not (out / "index.html").exists() and (out / "leaderboard.md").exists()


def test_a_failed_build_keeps_the_previous_board(slm_cli, runs, tmp_path, user_files):
    out = tmp_path / "out"
    assert slm_cli("leaderboard", runs, "--spec", "lite", "--allow-limit", "--out", out).code == 0
    user_notes(out)
    snap = user_files(tmp_path)
    bad = tmp_path / "bad" / "results_2026-01-01T00-00-00.json"
    bad.parent.mkdir()
    bad.write_text("{ not json")
    res = slm_cli("leaderboard", runs, bad, "--spec", "lite", "--allow-limit", "--out", out)
    refused(res, bad, "not valid JSON")
    snap.assert_kept()


def test_a_board_folder_of_an_earlier_version_is_adopted(slm_cli, runs, tmp_path):
    out = tmp_path / "out"
    assert slm_cli("leaderboard", runs, "--spec", "lite", "--allow-limit", "--out", out).code == 0
    (out / MANIFEST).unlink()  # earlier versions wrote a folder holding only the board
    assert slm_cli("leaderboard", runs, "--spec", "lite", "--allow-limit", "--out", out).code == 0
    (out / MANIFEST).unlink()
    (out / "notes.txt").write_text("mine\n")  # ... and with a file of the user's it is not theirs
    res = slm_cli("leaderboard", runs, "--spec", "lite", "--allow-limit", "--out", out)
    refused(res, "not written by slm-suite")
    assert (out / "notes.txt").read_text() == "mine\n"


def test_a_corrupt_manifest_counts_as_no_manifest(slm_cli, runs, tmp_path, user_files):
    out = tmp_path / "out"
    user_notes(out)
    assert slm_cli("leaderboard", runs, "--spec", "lite", "--allow-limit", "--out", out).code == 0
    (out / MANIFEST).write_text("{ broken")
    snap = user_files(tmp_path)
    res = slm_cli("leaderboard", runs, "--spec", "lite", "--allow-limit", "--out", out)
    refused(res, out / "leaderboard", "not written by slm-suite")
    snap.assert_kept()


# ---- slm-suite run: the output path is checked before the evaluation ------------------------------

def run_cli(slm_cli, output_path, *extra):
    return slm_cli("run", "--model", SMOL, "--tasks", "slm_arc_easy_lite", "--limit", "1",
                   "--output-path", output_path, *extra)


@pytest.mark.parametrize("case", ["file", "below-file", "json-name", "dangling-link",
                                  "model-folder-is-a-file"])
def test_run_refuses_an_output_path_that_is_not_a_folder(slm_cli, tmp_path, user_files, case, monkeypatch):
    import slm_tasks.api as api

    monkeypatch.setattr(api, "evaluate", lambda *a, **k: pytest.fail("the evaluation started"))
    (tmp_path / "file.txt").write_text("a file\n")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / SMOL).write_text("where lm-eval would put the model's folder\n")
    path = {"file": tmp_path / "file.txt", "below-file": tmp_path / "file.txt" / "out",
            "json-name": tmp_path / "out.json", "dangling-link": tmp_path / "dangling",
            "model-folder-is-a-file": tmp_path / "runs"}[case]
    snap = user_files(tmp_path)
    res = run_cli(slm_cli, path, "--no-leaderboard")
    refused(res, tmp_path)
    assert "results:" not in res.out
    snap.assert_kept()
    assert not (tmp_path / "gone").exists() and not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("kind", READ_ONLY)
@pytest.mark.parametrize("out_rel", ["", "new/sub"])
def test_run_refuses_a_read_only_output_folder_before_the_evaluation(slm_cli, tmp_path, user_files,
                                                                     out_rel, kind, monkeypatch):
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
    sample = {"doc_id": 0, "doc": {}, "target": "0", "arguments": [["q", " a"]], "resps": [[[-1.0, True]]],
              "filtered_resps": [[-1.0, True]], "filter": "none", "metrics": ["acc"], "doc_hash": "d",
              "prompt_hash": "p", "target_hash": "t", "acc": 1.0}
    results = {"results": {"t": {"acc,none": 1.0}}, "configs": {"t": {"task": "t"}}, "versions": {"t": 1}}
    return results, {"t": [sample] * 50}


def tracker_for(path: Path):
    from lm_eval.loggers import EvaluationTracker

    tracker = EvaluationTracker(output_path=str(path))
    tracker.general_config_tracker.log_experiment_args(
        model_source="slm-llamacpp", model_args="model=m", system_instruction=None, chat_template=None,
        fewshot_as_multiturn=False)
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


@pytest.mark.parametrize("case", ["is-a-folder", "below-a-file", "new-folder"])
def test_a_single_output_file_in_hostile_places(tmp_path, user_files, case):
    """The cost record and `slm-suite bench --record FILE`: one line naming the file, no temp file."""
    from slm_tasks.leaderboards.outputs import OutputError
    from slm_tasks.run_output import write_text_atomic

    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-folder" / "mine.txt").write_text("mine\n")
    (tmp_path / "a-file").write_text("mine\n")
    path = {"is-a-folder": tmp_path / "a-folder", "below-a-file": tmp_path / "a-file" / "record.json",
            "new-folder": tmp_path / "new" / "record.json"}[case]
    snap = user_files(tmp_path)
    if case == "new-folder":
        write_text_atomic(path, "{}\n", fix="choose another --record")
        snap.assert_kept(written={"new", "new/record.json"})
        assert path.read_text() == "{}\n"
        return
    with pytest.raises(OutputError) as err:
        write_text_atomic(path, "{}\n", fix="choose another --record")
    assert str(path) in str(err.value) and str(err.value).endswith("choose another --record")
    snap.assert_kept()
    no_temp_files(tmp_path)


# ---- re-runs into one folder ----------------------------------------------------------------------

def rerun(folder: Path, stamp: str, date_shift: float, drop_task: str | None = None) -> Path:
    """A copy of the model's run in ``folder`` as if made again: new time stamp, later date."""
    (old,) = folder.glob("results_*[0-9].json")
    data = json.loads(old.read_text())
    data["date"] = float(data["date"]) + date_shift
    if drop_task:
        for key in ("results", "configs", "versions", "n-shot", "higher_is_better", "n-samples",
                    "task_hashes"):
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

def cost_record(tmp_path: Path, folder: str, stamp: str, **changes) -> dict:
    record = json.loads((FIXTURES / "cost-record.example.json").read_text())
    record["bench"] = {"protocol": "survey-p50-g50-c2048", "runs": 3, "tg_ms_per_token": 9.0, "stamp": stamp,
                       "n_threads": record["hardware"]["threads"]}
    for key, value in changes.items():
        part, _, field = key.partition("__")
        record[part][field] = value
    path = tmp_path / folder / f"results_{stamp}.cost.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return record


def this_run(**run):
    record = json.loads((FIXTURES / "cost-record.example.json").read_text())
    record["run"].update({"requests": 0, "reused_requests": 40, **run})
    return record


def test_a_run_from_the_store_reuses_the_newest_matching_bench(tmp_path):
    from slm_tasks.run_output import reusable_bench

    cost_record(tmp_path, "m", "2026-01-01T00-00-00.000000")
    cost_record(tmp_path, "m", "2026-02-01T00-00-00.000000")
    cost_record(tmp_path, "m", "2026-03-01T00-00-00.000000", hardware__cpu="another CPU")
    bench, source = reusable_bench(tmp_path, this_run())
    assert bench["stamp"] == "2026-02-01T00-00-00.000000"
    assert source == "m/results_2026-02-01T00-00-00.000000.cost.json"


@pytest.mark.parametrize("change", [
    {"hardware__threads": 1}, {"model__file_bytes": 1}, {"model__quant": "Q8_0"},
    {"model__name": "other"}, {"software__backend_version": "0.0.1"}])
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
    (tmp_path / "m" / "results_2026-05-01T00-00-00.000000.cost.json").write_text("{ broken")
    os.mkfifo(tmp_path / "m" / "results_2026-06-01T00-00-00.000000.cost.json")
    bench, _ = reusable_bench(tmp_path, this_run())
    assert bench["stamp"] == "2026-01-01T00-00-00.000000"


# ---- real runs of the embedded model (a one-document task; answers kept in a store) ----------------

def real_run(out: Path, store: Path, **kwargs):
    from slm_tasks.api import run

    return run(tasks=["slm_arc_easy_lite"], limit=1, output_path=out, model_args={"store": str(store)},
               **{"bench_runs": 0, "leaderboard": False, **kwargs})


def test_run_repeated_into_its_folder_reuses_the_bench_and_the_folder_still_builds(mirror_env, tmp_path,
                                                                                   slm_cli, monkeypatch):
    import slm_tasks.adapters.bench as bench_mod

    out, store = tmp_path / "out", tmp_path / "store.sqlite"
    first = real_run(out, store)
    # the bench of an earlier run of this model on this machine (as `slm-suite run` records it)
    record = json.loads(first.cost_file.read_text())
    record["bench"] = {"protocol": "survey-p50-g50-c2048", "runs": 3, "tg_ms_per_token": 12.5,
                       "n_threads": record["hardware"]["threads"]}
    first.cost_file.write_text(json.dumps(record))
    monkeypatch.setattr(bench_mod, "bench", lambda *a, **k: pytest.fail("benched again"))
    second = real_run(out, store, bench_runs=3, leaderboard=True)  # every answer from the store
    run_cost = second.results["config"]["slm_cost"]["run"]
    assert run_cost["requests"] == 0 and run_cost["reused_requests"] > 0
    assert json.loads(second.cost_file.read_text())["bench"] == record["bench"]
    (note,) = [n for n in second.notes if "runtime bench" in n]
    assert first.cost_file.name in note
    # both runs are in the folder; the board of that folder shows the newest and names the other
    res = slm_cli("leaderboard", out, "--spec", "lite", "--allow-limit", "--out", tmp_path / "board")
    assert res.code == 0, res.err
    notes = json.loads((tmp_path / "board" / "leaderboard.json").read_text())["notes"]
    assert any(n.startswith(f"{SMOL}/{first.results_file.name}: superseded by the newer run "
                            f"{SMOL}/{second.results_file.name}") for n in notes)
    assert slm_cli("leaderboard", out, "--spec", "lite", "--allow-limit", "--strict",
                   "--out", tmp_path / "board").code == 2


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
