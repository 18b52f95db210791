"""Reading the board's and the gate's input files safely: regular files only, bounded sizes.

A results folder can hold anything a user or another program left there: a FIFO (opening it
blocks until a writer comes), a link to an endless device (reading never ends), a link loop
between folders, a dangling link. Every reader of result, cost and samples files goes through
here: the target of a path (links are followed) must be a regular file, it is opened without
blocking, and what is read into memory at once is bounded.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from slm_tasks.results.errors import BoardError

MiB = 1 << 20
MAX_JSON_BYTES = 256 * MiB  # a results file or cost record; lm-eval's largest are a few MiB
MAX_LINE_BYTES = 64 * MiB  # one samples line: one document, its prompts and answers

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` (an existing entry) cannot be read as a file, or None when it can."""
    try:
        st = os.stat(path)  # follows links
    except FileNotFoundError:
        return "a link to a missing file" if os.path.islink(path) else "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if not stat.S_ISREG(st.st_mode):
        return _kind(st.st_mode) if not os.path.islink(path) else f"a link to {_kind(st.st_mode)}"
    return None


def open_regular(path: str | os.PathLike, what: str) -> BinaryIO:
    """``path`` opened for reading in binary; a BoardError naming it when it is not a regular
    file. O_NONBLOCK keeps a FIFO swapped in after a check from blocking the open."""
    why = problem(path)
    if why is None:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except OSError as exc:
            why = f"unreadable ({exc.strerror})"
        else:
            mode = os.fstat(fd).st_mode
            if stat.S_ISREG(mode):
                os.set_blocking(fd, True)
                return os.fdopen(fd, "rb")
            os.close(fd)
            why = _kind(mode)
    kind = "" if why.startswith("unreadable") else ", not a regular file"
    raise BoardError(
        f"{path}: {what} is {why}{kind}; the board and the gate read only regular files: remove or replace it"
    )


def read_bytes(path: str | os.PathLike, what: str, cap: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of a regular file of at most ``cap`` bytes; otherwise a one-line BoardError."""
    with open_regular(path, what) as f:
        size = os.fstat(f.fileno()).st_size
        if size > cap:
            raise BoardError(
                f"{path}: {what} is {_mib(size)}, more than the {_mib(cap)} read at most; is it really a {what}?"
            )
        try:
            data = f.read(cap + 1)  # the file may have grown since fstat
        except OSError as exc:
            raise BoardError(f"{path}: cannot read {what} ({exc.strerror})") from None
    if len(data) > cap:
        raise BoardError(f"{path}: {what} grew past the {_mib(cap)} read at most while being read")
    return data


def read_text(path: str | os.PathLike, what: str, cap: int = MAX_JSON_BYTES) -> str:
    """UTF-8 text of a regular file of at most ``cap`` bytes (a spec, a policy)."""
    data = read_bytes(path, what, cap)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BoardError(f"{path}: not UTF-8 text (byte {exc.start}); is it a complete {what}?") from None


def read_json(path: str | os.PathLike, what: str, cap: int = MAX_JSON_BYTES) -> Any:
    """One JSON document of at most ``cap`` bytes; every failure is a one-line BoardError."""
    text = read_text(path, what, cap)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BoardError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno}); is it a complete {what}?") from None
    except RecursionError:
        raise BoardError(f"{path}: JSON nested too deeply to read; is it a complete {what}?") from None


def text_lines(path: str | os.PathLike, what: str, max_line: int = MAX_LINE_BYTES) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 text file, streamed; a line longer than ``max_line``
    bytes or one that is not UTF-8 is a one-line BoardError naming the file and the line."""
    with open_regular(path, what) as f:
        lineno = 0
        while True:
            try:
                raw = f.readline(max_line + 1)
            except OSError as exc:
                raise BoardError(f"{path}: cannot read {what} ({exc.strerror})") from None
            if not raw:
                return
            lineno += 1
            if len(raw) > max_line:
                raise BoardError(f"{path}: line {lineno} is longer than {_mib(max_line)}; is it really a {what}?")
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BoardError(
                    f"{path}: line {lineno} is not UTF-8 text (byte {exc.start}); is it really a {what}?"
                ) from None


def _mib(n: int) -> str:
    return f"{n / MiB:.0f} MiB ({n} bytes)" if n >= MiB else f"{n} bytes"


# --- discovery ------------------------------------------------------------------------------
def walk(root: str | os.PathLike) -> Iterator[Path]:
    """Every entry below ``root`` that is not a directory, sorted per folder. Links to folders
    are followed once: a folder already visited (a link loop, two links to one folder) is not
    entered again."""
    seen: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        try:
            st = os.stat(folder)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort()
        for name in sorted(files):
            yield Path(folder) / name


_MAGIC = re.compile(r"[*?\[]")


def glob_entries(pattern: str) -> list[Path]:
    """The paths a glob pattern (``**`` for any folders) matches: entries that are not
    folders, plus folders matched by the pattern itself, found by :func:`walk`."""
    parts = Path(pattern).parts
    fixed = next((i for i, p in enumerate(parts) if _MAGIC.search(p)), len(parts))
    base = Path(*parts[:fixed]) if fixed else Path(".")
    rest = parts[fixed:]
    if not base.is_dir():
        return []
    out: set[Path] = set()
    for entry in walk(base):
        rel = entry.relative_to(base).parts
        for n in range(1, len(rel) + 1):  # a matched folder stands for the files inside it
            if _match(rest, rel[:n]):
                out.add(base.joinpath(*rel[:n]) if n < len(rel) else entry)
                break
    return sorted(out)


def _match(pat: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    """Path components against pattern components as :func:`glob.glob` matches them: ``**``
    matches any number of components, and a wildcard matches a hidden name only when the
    pattern component itself starts with a dot."""
    if not pat:
        return not parts
    if pat[0] == "**":
        visible = next((i for i, p in enumerate(parts) if p.startswith(".")), len(parts))
        return any(_match(pat[1:], parts[i:]) for i in range(visible + 1))
    if not parts or (parts[0].startswith(".") and not pat[0].startswith(".")):
        return False
    return fnmatch.fnmatchcase(parts[0], pat[0]) and _match(pat[1:], parts[1:])
