"""Helpers of the hostile write tests: the user's files, folders that cannot be written, a full
disk (real tmpfs mounts where root may mount them), and the checks of a refusal."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "results"
SMOL = "smollm2-135m"
GEMMA = "gemma3-270m"
BOARD = {"leaderboard.json", "leaderboard.csv", "leaderboard.md", "index.html"}
GATE = {"gate.md", "gate.json", "gate.junit.xml"}
POLICY = "schema: slm-suite.gate-policy/1\nspec: lite\nallow_limit: true\nmargins: {default: 0.05}\nbudgets: {}\n"


def user_notes(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("my notes\n")
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "draft.md").write_bytes(b"\x00binary\xff")
    (folder / "link-to-notes").symlink_to("notes.txt")


def succeeded(res, kind) -> None:
    # the gate's exit code is its verdict (0 pass, 1 fail, 3 not shown); 2 would be a refusal
    assert res.code in ((0,) if kind == "board" else (0, 1, 3)), res.err
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


@contextlib.contextmanager
def small_mount(where: Path, size: str = "64k"):
    """A real tmpfs (root only): a full disk or a read-only folder even for root."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True
    )
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
        if (
            shutil.which("chattr") is None
            or subprocess.run(["chattr", "+i", str(where)], capture_output=True).returncode != 0
        ):
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


def copy_runs(tmp_path: Path) -> Path:
    """The committed llama.cpp runs (results + samples of two models), copied."""
    dest = tmp_path / "runs"
    shutil.copytree(FIXTURES / "llamacpp-limit30", dest)
    return dest
