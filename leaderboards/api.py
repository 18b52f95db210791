"""The leaderboards' Python API (re-exported by :mod:`slm_tasks.leaderboards`): build a board
into a folder, run the release gate.

The pieces load when called, so importing the package stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

# what a board build writes into its folder (index.html unless html=False)
BOARD_FILES = ("leaderboard.json", "leaderboard.csv", "leaderboard.md", "index.html", "long_context.png")


def build(
    inputs: Iterable[str | os.PathLike],
    spec=None,
    out: str | os.PathLike = "leaderboard",
    allow_limit: bool | None = None,
    html: bool = True,
    strict: bool = False,
) -> Path:
    """Build a board from result files/folders/globs into the folder ``out``.

    Writes leaderboard.json, .csv, .md and index.html there and touches nothing else in it
    (see :func:`write_folder`). On any error the previous board in ``out`` is left as it was.
    Re-runs (the same model and task in several files): the newest run is shown and each
    superseded file is named in a note; ``strict`` refuses them instead.
    """
    from slm_tasks.leaderboards.board import build_board
    from slm_tasks.leaderboards.ingest import load_runs
    from slm_tasks.leaderboards.render import to_csv, to_json, to_markdown
    from slm_tasks.leaderboards.rerun import newest_runs
    from slm_tasks.leaderboards.spec import load_spec

    spec = load_spec(spec)
    runs = load_runs(list(inputs) if not isinstance(inputs, (str, os.PathLike)) else [inputs])
    runs, rerun_notes = newest_runs(runs, strict=strict)
    board = build_board(runs, spec, allow_limit=allow_limit)
    board["notes"] = rerun_notes + list(board.get("notes") or [])
    files = {
        "leaderboard.json": to_json(board),
        "leaderboard.csv": to_csv(board),
        "leaderboard.md": to_markdown(board),
    }
    if html:
        from slm_tasks.leaderboards.html import to_html
        from slm_tasks.leaderboards.long_context_render import PNG_NAME, png

        files["index.html"] = to_html(board)
        picture = png(board)
        if picture is not None:  # the long-context heat maps, beside the page that links them
            files[PNG_NAME] = picture
    return write_folder(Path(out), files)


def write_folder(out: Path, files: dict[str, str | bytes]) -> Path:
    """Write ``files`` (name -> text, or bytes for a picture) into the folder ``out`` and return its absolute path.

    Only these files are replaced, each all-or-nothing; the user's other files there are never
    touched, and a same-named file slm-suite did not write is refused. Every write error is a
    one-line :class:`~slm_tasks.leaderboards.outputs.OutputError` (exit code 2).
    See :mod:`slm_tasks.leaderboards.outputs`.
    """
    from slm_tasks.leaderboards.outputs import write_folder as write

    return write(Path(out), files)


def gate(baseline, candidate, policy=None, out=None, allow_limit: bool | None = None):
    """Decide whether ``candidate`` may replace ``baseline``; see slm_tasks.leaderboards.release_gate.
    ``allow_limit``: accept --limit runs (a smoke comparison, never a pass), as ``--allow-limit``."""
    from slm_tasks.leaderboards.release_gate import run_gate

    return run_gate(baseline, candidate, policy, out=out, allow_limit=allow_limit)
