"""Hostile output folders: no command deletes, moves or rewrites a file it did not write.

`slm-suite leaderboard --out` and `slm-suite gate --out` meet folders holding the user's
notes, the current folder, the runs folder itself, a same-named file of the user's, a file, a
link, a read-only or immutable folder, a full disk. After each: the user's files are
byte-identical (``user_files``), the exit code is 0 (the gate: its verdict, 0, 1 or 3) or 2, and a
failure is one stderr line naming the path. `slm-suite run`: tests/test_hostile_runs.py.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from slm_tasks.leaderboards.outputs import MANIFEST


def _helpers():
    spec = importlib.util.spec_from_file_location("hostile_io", Path(__file__).with_name("hostile_io.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


io = _helpers()
FIXTURES, SMOL, GEMMA, POLICY = io.FIXTURES, io.SMOL, io.GEMMA, io.POLICY
BOARD, GATE = io.BOARD, io.GATE
READ_ONLY, read_only_folder = io.READ_ONLY, io.read_only_folder
small_mount, fill_disk = io.small_mount, io.fill_disk
user_notes, succeeded, refused, no_temp_files = io.user_notes, io.succeeded, io.refused, io.no_temp_files


@pytest.fixture()
def runs(tmp_path) -> Path:
    return io.copy_runs(tmp_path)


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
        return slm_cli(
            "gate", "--baseline", runs / SMOL, "--candidate", runs / GEMMA, "--policy", policy, "--out", out, "--quiet"
        ), GATE

    run.kind = kind
    return run


both = pytest.mark.parametrize("command", ["board", "gate"], indirect=True)


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
    gated = slm_cli(
        "gate", "--baseline", runs / SMOL, "--candidate", runs / GEMMA, "--policy", policy, "--out", out, "--quiet"
    )
    assert gated.code in (0, 1, 3), gated.err
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


# ---- one output file: the cost record, `slm-suite bench --record FILE` ---------------------------


@pytest.mark.parametrize("case", ["is-a-folder", "below-a-file", "new-folder"])
def test_a_single_output_file_in_hostile_places(tmp_path, user_files, case):
    """The cost record and `slm-suite bench --record FILE`: one line naming the file, no temp file."""
    from slm_tasks.leaderboards.outputs import OutputError
    from slm_tasks.run_output import write_text_atomic

    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-folder" / "mine.txt").write_text("mine\n")
    (tmp_path / "a-file").write_text("mine\n")
    path = {
        "is-a-folder": tmp_path / "a-folder",
        "below-a-file": tmp_path / "a-file" / "record.json",
        "new-folder": tmp_path / "new" / "record.json",
    }[case]
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
