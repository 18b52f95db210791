"""Leaderboards and the release gate.

    from slm_tasks.leaderboards import build, gate
    build(["runs/"], spec="lite", out="board/")            # -> Path of the board folder
    result = gate("runs/base", "runs/cand", "leaderboards/gate.yaml")

The public API only: the functions are in :mod:`slm_tasks.leaderboards.api`, the errors in
:mod:`slm_tasks.results.errors`. No module of the package imports this one back.
"""

from slm_tasks.leaderboards.api import build, gate
from slm_tasks.results.errors import BoardError, GateError

__all__ = ["build", "gate", "BoardError", "GateError"]
