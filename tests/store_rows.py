"""Counting a response store's rows from outside, read-only, while a run may be writing it."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def stored_rows(store: Path) -> int:
    """Responses committed to ``store`` so far (0 while it does not exist or has no schema yet)."""
    if not store.exists():
        return 0
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as conn:
        try:
            return conn.execute("SELECT count(*) FROM responses").fetchone()[0]
        except sqlite3.OperationalError:
            return 0
