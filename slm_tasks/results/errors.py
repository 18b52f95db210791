"""Errors for bad leaderboard / gate input: one line, naming the file and the fix."""

from __future__ import annotations

from slm_tasks.errors import SLMError


class BoardError(SLMError):
    """Result files or a board spec that cannot make a valid leaderboard.

    ``problems`` keeps every finding (the message joins them on one line).
    """

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = list(problems or [message])
        super().__init__(message)

    @classmethod
    def many(cls, problems: list[str], what: str = "invalid input"):
        if len(problems) == 1:
            return cls(problems[0], problems)
        return cls(f"{len(problems)} problems ({what}): " + "; ".join(problems), problems)


class GateError(BoardError):
    """Baseline/candidate runs or a gate policy that cannot be compared (exit code 2)."""
