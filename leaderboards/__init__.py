"""Leaderboards and the release gate.

    from slm_tasks.leaderboards import build, gate
    build(["runs/"], spec="lite", out="board/")            # -> Path of the board folder
    result = gate("runs/base", "runs/cand", "leaderboards/gate.yaml")
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from slm_tasks.leaderboards.errors import BoardError, GateError

__all__ = ["build", "gate", "BoardError", "GateError"]


def build(inputs: Iterable[str | os.PathLike], spec=None, out: str | os.PathLike = "leaderboard",
          allow_limit: bool | None = None, html: bool = True) -> Path:
    """Build a board from result files/folders/globs into ``out`` (replaced atomically).

    Writes leaderboard.json, .csv, .md and index.html. On any error the previous board in
    ``out`` is left as it was.
    """
    from slm_tasks.leaderboards import render
    from slm_tasks.leaderboards.board import build_board
    from slm_tasks.leaderboards.ingest import load_runs
    from slm_tasks.leaderboards.spec import load_spec

    spec = load_spec(spec)
    runs = load_runs(list(inputs) if not isinstance(inputs, (str, os.PathLike)) else [inputs])
    board = build_board(runs, spec, allow_limit=allow_limit)
    files = {
        "leaderboard.json": render.to_json(board),
        "leaderboard.csv": render.to_csv(board),
        "leaderboard.md": render.to_markdown(board),
    }
    if html:
        from slm_tasks.leaderboards.html import to_html

        files["index.html"] = to_html(board)
    return write_folder(Path(out), files)


def write_folder(out: Path, files: dict[str, str]) -> Path:
    """Write files into a temp folder beside ``out``, then swap it into place."""
    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; a board is for reading
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")
        if out.exists():
            if not out.is_dir():
                raise BoardError(f"{out}: exists and is not a folder; choose another --out")
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "board")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def gate(baseline, candidate, policy=None, out=None):
    """Decide whether ``candidate`` may replace ``baseline``; see slm_tasks.leaderboards.release_gate."""
    from slm_tasks.leaderboards.release_gate import run_gate

    return run_gate(baseline, candidate, policy, out=out)
