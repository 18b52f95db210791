"""What a published board may say about the machine that built it: nothing local.

A results file is named relative to the folder the runs share and identified by a content
digest; a model by its file name and, when its record has one, its sha256. Any other
absolute path left in a string (a task's ``config_source``, a note that quotes a path) is
cut to its last component.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

DIGEST_CHARS = 16  # 64 bits of sha256: enough to tell files apart, short enough to read

# An absolute (or ~/) path with at least two components, starting a string or after a
# separator; "ms/token", "1/choices" and URLs ("https://...") do not match.
_ABS_PATH = re.compile(r"""(?:^|(?<=[\s=,;'"(\[]))~?/[^\s,;'"()\[\]<>|/]+(?:/[^\s,;'"()\[\]<>|/]*)+""")


def file_digest(path: Path) -> str | None:
    """sha256 prefix of a file's bytes (None when it cannot be read any more)."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()[:DIGEST_CHARS]
    except OSError:
        return None


def run_names(paths: list[Path]) -> dict[Path, str]:
    """Each results file's name as published: relative to the folder the files share, with
    that folder's own name in front ("runs/m1/results_x.json"); a file alone in its folder
    keeps its folder's name ("m1/results_x.json"). Never the machine's absolute path."""
    parents = [p.resolve().parent for p in paths]
    if not parents:
        return {}
    shared = Path(os.path.commonpath(parents))
    base = shared.parent
    home = Path.home().resolve()
    if base == Path(base.anchor) or base == home or base in home.parents:
        # the files share no folder below the home folder: name the file by its folder only
        return {p: f"{p.resolve().parent.name}/{p.name}" for p in paths}
    return {p: p.resolve().relative_to(base).as_posix() for p in paths}


def strip_paths(text: str) -> str:
    """Every absolute path in ``text`` cut to its last component."""
    return _ABS_PATH.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1], text)


def model_identity(model: dict[str, Any] | None) -> dict[str, Any] | None:
    """A cost record's model section as published: ``path`` becomes ``file`` (its name) and
    ``sha256`` (from the record when present)."""
    if not model:
        return model
    out = {k: v for k, v in model.items() if k != "path"}
    path = model.get("path")
    out["file"] = Path(str(path)).name if path else None
    out["sha256"] = model.get("sha256") or model.get("model_sha256")
    return out


def scrub(doc: Any, replace: dict[str, str]) -> Any:
    """``doc`` (JSON-like) with each ``replace`` key replaced by its value in every string and
    key, longest first, then any absolute path left cut to its last component."""
    order = sorted(replace, key=len, reverse=True)

    def text(s: str) -> str:
        for old in order:
            if old in s:
                s = s.replace(old, replace[old])
        return strip_paths(s)

    def walk(x: Any) -> Any:
        if isinstance(x, str):
            return text(x)
        if isinstance(x, dict):
            return {(text(k) if isinstance(k, str) else k): walk(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(v) for v in x]
        return x

    return walk(doc)
