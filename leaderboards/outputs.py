"""Writing a command's output files into a folder the user names, without touching anything else.

A board or gate report goes into a folder that may also hold the user's notes, the runs it was
built from, or be the current folder (``--out .``). Only the files the command writes are ever
replaced: every file is first written in full to a temporary name beside its target, then
renamed into place, so a failed write leaves the previous files as they were. A manifest
(:data:`MANIFEST`) lists what slm-suite wrote there; a same-named file that it does not list
belongs to the user and is never replaced.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path

from slm_tasks.errors import SLMError

MANIFEST = ".slm-suite-outputs.json"
MANIFEST_SCHEMA = "slm-suite.outputs/1"
FIX = "choose another --out (a new or empty folder)"


class OutputError(SLMError):
    """An output could not be written (exit code 2); the message names the path and the cause."""


def describe_os_error(exc: OSError) -> str:
    """``[Errno 28] No space left on device: 'x'`` -> ``No space left on device``."""
    return exc.strerror or errno.errorcode.get(exc.errno or 0, "") or type(exc).__name__


def write_error(path: Path, exc: OSError, fix: str = FIX) -> OutputError:
    return OutputError(f"{path}: cannot write ({describe_os_error(exc)}); {fix}")


def ensure_folder(folder: Path, fix: str = FIX) -> Path:
    """``folder`` exists (created if needed) and is a folder; one-line OutputError otherwise."""
    folder = Path(folder).absolute()
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: exists and is not a folder; {fix}")
    if folder.is_symlink() and not folder.exists():
        raise OutputError(f"{folder}: a link to a missing folder ({os.readlink(folder)}); {fix}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        # a part of the path that is a file, a read-only parent, ...
        blocker = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise OutputError(f"{folder}: {blocker} is a file, not a folder; {fix}") from None
        raise OutputError(f"{folder}: cannot create the folder ({describe_os_error(exc)}); {fix}") from None
    return folder


def probe_writable(folder: Path, fix: str = FIX, named: Path | None = None) -> None:
    """Create and remove a file in ``folder``: the only test that also holds for root, read-only
    mounts and immutable folders. ``named``: the path the user gave, when ``folder`` is the
    existing folder it would be created in."""
    try:
        fd, name = tempfile.mkstemp(prefix=".slm-suite-probe-", dir=folder)
    except OSError as exc:
        if named is not None:
            cause = describe_os_error(exc)
            raise OutputError(f"{named}: cannot create it in {folder} ({cause}); {fix}") from None
        raise write_error(folder, exc, fix) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)


def check_writable(folder: Path, names=(), fix: str = FIX) -> None:
    """Before long work: would :func:`write_folder` of ``names`` into ``folder`` succeed?

    Checks what can be known beforehand (a file in the way, a folder that cannot be written,
    a same-named file slm-suite did not write) without creating anything that stays."""
    folder = Path(folder).absolute()
    try:
        _check_writable(folder, names, fix)
    except OSError as exc:  # a parent that cannot be searched, ...
        raise write_error(folder, exc, fix) from None


def _check_writable(folder: Path, names, fix: str) -> None:
    if os.path.lexists(folder):
        if not folder.is_dir():
            raise OutputError(f"{folder}: exists and is not a folder; {fix}")
        _our_writes(folder, names, fix)
        probe_writable(folder, fix)
        return
    existing = next(p for p in folder.parents if os.path.lexists(p))
    if not existing.is_dir():
        raise OutputError(f"{folder}: {existing} is a file, not a folder; {fix}")
    probe_writable(existing, fix, named=folder)


def _our_writes(folder: Path, names, fix: str = FIX) -> list[list[str]]:
    """The manifest's writes; OutputError if one of ``names`` is there but not ours."""
    writes = read_manifest(folder) or _earlier_version_outputs(folder, names)
    ours = {n for w in writes for n in w}
    for name in names:
        target = folder / name
        if os.path.lexists(target) and (name not in ours or target.is_symlink() or not target.is_file()):
            raise OutputError(f"{target}: exists and was not written by slm-suite, so it is left as it is; {fix}")
    return writes


def read_manifest(folder: Path) -> list[list[str]]:
    """The file sets earlier commands wrote into ``folder`` (one list per write); [] if none.

    A manifest that cannot be read counts as empty: then no existing file is ours, and none is
    replaced."""
    try:
        doc = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    writes = doc.get("writes") if isinstance(doc, dict) else None
    if not isinstance(writes, list):
        return []
    return [[n for n in w if isinstance(n, str)] for w in writes if isinstance(w, list)]


def write_folder(out: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (name -> text) into the folder ``out``; return its absolute path.

    All files are written to temporary names first; only when every one is complete are they
    renamed into place. A file of the same name that slm-suite did not write is refused
    (OutputError) before anything is written. Files of an earlier write of the same set that
    this one no longer writes (``index.html`` after ``--no-html``) are removed; nothing else in
    the folder is touched. Every OSError becomes a one-line OutputError.
    """
    try:
        return _write_folder(Path(out).absolute(), files)
    except OSError as exc:  # what the steps below do not name themselves
        raise write_error(Path(out).absolute(), exc) from None


def _write_folder(out: Path, files: dict[str, str]) -> Path:
    out = ensure_folder(out)
    writes = _our_writes(out, files)
    new = set(files)
    # an earlier write of this same set (it shares a file name) is replaced as a whole
    replaced = [w for w in writes if new & set(w)]
    stale = sorted({n for w in replaced for n in w} - new - {MANIFEST})
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "about": "files slm-suite wrote here; it replaces only these",
        "writes": [w for w in writes if w not in replaced] + [sorted(new)],
    }
    # the manifest first: a file in place is then always one the manifest names
    ordered = [(MANIFEST, json.dumps(manifest, indent=2) + "\n"), *files.items()]
    staged: dict[str, str] = {}
    target = out
    try:
        for name, text in ordered:  # a failure here names the folder: no file is changed yet
            staged[name] = _stage(out, name, text)
        for name, _ in ordered:
            target = out / name
            os.replace(staged.pop(name), target)
    except OSError as exc:
        raise write_error(target, exc) from None
    finally:
        for tmp in staged.values():
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    for name in stale:
        path = out / name
        if path.is_file() and not path.is_symlink():
            with contextlib.suppress(OSError):
                path.unlink()
    return out


def _earlier_version_outputs(folder: Path, names) -> list[list[str]]:
    """Earlier versions wrote no manifest, but a folder holding nothing but their own files,
    one of them JSON with an slm-suite schema. Such a folder is adopted as ours."""
    try:
        present = {p.name for p in folder.iterdir()}
    except OSError:
        return []
    if not present or not present <= set(names):
        return []
    for name in sorted(n for n in present if n.endswith(".json")):
        try:
            schema = json.loads((folder / name).read_text(encoding="utf-8")).get("schema")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(schema, str) and schema.startswith("slm-suite."):
            return [sorted(present)]
    return []


def _stage(folder: Path, name: str, text: str) -> str:
    """``text`` written in full to a temporary file in ``folder``; returns its path."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it private; outputs are for reading
        with open(fd, "wb") if isinstance(text, bytes) else open(fd, "w", encoding="utf-8") as f:
            f.write(text)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
