"""The sqlite file of a response store (:mod:`slm_tasks.adapters.store`): opened without
touching somebody's other file, its header and schema checked or created, WAL switched on
under concurrent openers, and sqlite's errors named with the fix."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from slm_tasks.adapters.store_keys import StoreError, canonical_json

SCHEMA_VERSION = 1
APPLICATION_ID = 0x534C4D52  # "SLMR" in the sqlite header: tells a store from other sqlite files
FIX = "pass --store PATH for another file, or --no-store (model_args store=PATH / store=off)"


def sqlite_error(path: Path, exc: BaseException) -> StoreError:
    msg = str(exc)
    low = msg.lower()
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        return StoreError(f"response store {path} is corrupt ({msg}): delete it, or {FIX}")
    if "readonly" in low or "read-only" in low:
        return StoreError(f"response store {path} is read-only ({msg}): make it writable, or {FIX}")
    if "full" in low or "disk i/o" in low:
        return StoreError(f"cannot write response store {path} ({msg}): free space on its disk, or {FIX}")
    if "unable to open" in low:
        why = (
            "its folder does not exist"
            if not path.parent.is_dir()
            else "its folder is not writable"
            if not os.access(path.parent, os.W_OK)
            else msg
        )
        return StoreError(f"cannot open response store {path} ({why}): {FIX}")
    if "locked" in low or "busy" in low:
        return StoreError(
            f"response store {path} stayed locked by another process ({msg}): wait for it to finish, or {FIX}"
        )
    return StoreError(f"response store {path} failed ({msg}): {FIX}")


_SCHEMA = (
    "CREATE TABLE models(id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, identity TEXT)",
    (
        "CREATE TABLE responses(model INTEGER NOT NULL, kind INTEGER NOT NULL, req BLOB NOT NULL, "
        "t INTEGER NOT NULL, v, timing TEXT, crc INTEGER NOT NULL, PRIMARY KEY (model, kind, req)) WITHOUT ROWID"
    ),
    f"PRAGMA application_id = {APPLICATION_ID}",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
_NOT_A_STORE = "pass --store PATH naming a store or a new file, or --no-store"


def connect(path: Path, readonly: bool, timeout: float) -> sqlite3.Connection:
    if not readonly:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of response store {path} ({exc.strerror}): {FIX}") from None
    if path.is_dir():
        raise StoreError(f"response store {path} is a folder: {_NOT_A_STORE}")
    if readonly and not path.is_file():
        raise StoreError(f"response store {path} does not exist: pass --store PATH naming a store, or --no-store")
    if path.is_file() and path.stat().st_size > 0:
        with open(path, "rb") as f:  # never touch somebody's other file
            if f.read(16) != b"SQLite format 3\0":
                raise StoreError(f"{path} is not a response store (not an sqlite file): {_NOT_A_STORE}")
    uri = "file:" + quote(str(path)) + ("?mode=ro" if readonly else "?mode=rwc")
    # any thread may close it (the exit hook runs in the main one); one thread at a time uses it
    kw = {"uri": True, "timeout": timeout, "isolation_level": None, "check_same_thread": False}
    try:
        conn = sqlite3.connect(uri, **kw)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as exc:
            conn.close()
            if not (readonly and "unable to open" in str(exc) and not os.access(path.parent, os.W_OK)):
                raise
            # a WAL file in a read-only folder has no shared-memory file; nobody can write
            # there, so it is read as immutable
            conn = sqlite3.connect(uri + "&immutable=1", **kw)
        return conn
    except sqlite3.Error as exc:
        raise sqlite_error(path, exc) from None


def _check_header(conn: sqlite3.Connection, path: Path) -> bool:
    """True when the file holds our schema, False when it is empty."""
    # one statement, one snapshot: another process may be creating the schema meanwhile
    app, version, tables = conn.execute(
        "SELECT (SELECT application_id FROM pragma_application_id), "
        "(SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_master)"
    ).fetchone()
    if app == 0 and tables == 0:
        return False
    if app != APPLICATION_ID:
        raise StoreError(f"{path} is an sqlite file but not a response store: {_NOT_A_STORE}")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"response store {path} was written by a newer slm-suite (schema {version}, this one "
            f"reads {SCHEMA_VERSION}): upgrade slm-suite, or {FIX}"
        )
    return True


def _use_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch the file to WAL. sqlite answers a switch that races another connection with
    "database is locked" at once, without its busy handler, so the wait is done here."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchone()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def prepare(
    conn: sqlite3.Connection, path: Path, model_key: str, identity: Mapping | None, readonly: bool, timeout: float
) -> int | None:
    """Check the file, create the schema if it is new; the model's row id."""
    ready = _check_header(conn, path)
    problem = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
    if problem != "ok":
        problem = " ".join(problem.replace("*** in database main ***", "").split())
        raise StoreError(f"response store {path} is corrupt ({problem}): delete it, or {FIX}")
    if readonly:
        row = conn.execute("SELECT id FROM models WHERE key=?", (model_key,)).fetchone() if ready else None
        return row[0] if row else None
    _use_wal(conn, timeout)
    conn.execute("PRAGMA synchronous=NORMAL")  # with WAL: a crash loses no commit, a power cut may
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not _check_header(conn, path):  # again under the lock: another process may have made it
            for stmt in _SCHEMA:
                conn.execute(stmt)
        conn.execute(
            "INSERT OR IGNORE INTO models(key, identity) VALUES (?, ?)",
            (model_key, None if identity is None else canonical_json(identity, "identity")),
        )
        model_id = conn.execute("SELECT id FROM models WHERE key=?", (model_key,)).fetchone()[0]
        conn.execute("COMMIT")
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    return model_id
