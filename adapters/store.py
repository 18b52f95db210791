"""Responses a backend computed, kept on disk so that an interrupted run resumes.

One sqlite file (WAL mode) holds the answers of many models, keyed by (model key, request
kind, request key). The model key digests everything that can change an answer
(:func:`store_key` over a dict the backend builds, starting from :func:`model_identity`),
the request key the request's exact arguments (:func:`request_key`): two models never
share an answer, and a re-run computes only what is missing. See docs/store.md.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import numbers
import os
import signal
import sqlite3
import struct
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Self

from slm_tasks.adapters.store_file import FIX, connect, prepare, sqlite_error
from slm_tasks.adapters.store_keys import StoreError, _is_bool, _kind, cache_dir

log = logging.getLogger(__name__)

_CHUNK = 500  # keys per SELECT ... IN (...), well under sqlite's bound-parameter limit
_FLOAT, _STR, _PAIR_F, _PAIR_T, _JSON = range(5)  # how the ``v`` column holds a value


def default_store_path() -> Path:
    return cache_dir() / "responses.sqlite"


# --- values -------------------------------------------------------------------------------
def _is_real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, numbers.Integral)


def _real(x):
    f = float(x)
    return "NaN" if math.isnan(f) else f  # sqlite turns a NaN REAL into NULL


def _encode(value) -> tuple[int, object]:
    if isinstance(value, str):
        with contextlib.suppress(UnicodeEncodeError):  # lone surrogates go through JSON escapes
            value.encode("utf-8")
            return _STR, value
    elif _is_real(value):
        return _FLOAT, _real(value)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and _is_real(value[0]) and _is_bool(value[1]):
        return (_PAIR_T if value[1] else _PAIR_F), _real(value[0])
    try:
        return _JSON, json.dumps(value, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"cannot store a {type(value).__name__} response ({exc}): responses are JSON values") from None


def _decode(t: int, v):
    if t in (_STR, _JSON):
        return v if t == _STR else json.loads(v)
    f = float(v) if isinstance(v, str) else v
    return f if t == _FLOAT else (f, t == _PAIR_T)


def _crc(model: int, kind: int, req: bytes, t: int, v, timing: str | None) -> int:
    """A row's checksum: sqlite keeps none, and one flipped byte in a value is a wrong answer."""
    h = zlib.crc32(req, zlib.crc32(b"%d,%d,%d," % (model, kind, t)))
    h = zlib.crc32(struct.pack("<d", v) if isinstance(v, float) else v.encode("utf-8"), h)
    h = zlib.crc32(b"\0" if timing is None else timing.encode("utf-8"), h)
    return h - (1 << 32) if h >= 1 << 31 else h  # signed: 4 bytes in sqlite, not 6


# --- faults and signals -------------------------------------------------------------------
@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """SIGINT/SIGTERM wait until the commit is done: a signal never splits a batch."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def exit_on_sigterm() -> Iterator[None]:
    """While active (main thread only), SIGTERM raises ``SystemExit(143)``, so ``with`` and
    ``finally`` blocks and the exit hook close open stores, flushing them. SIGINT needs
    nothing (KeyboardInterrupt); SIGKILL loses the batch not yet committed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


# held strongly: a store dropped without close() still has its buffer committed at exit
_OPEN: set[ResponseStore] = set()


@atexit.register
def _close_all() -> None:
    # lm-eval never closes a model: what is still buffered at exit is committed here
    for store in list(_OPEN):
        try:
            store.close()
        except StoreError as exc:
            log.error("%s", exc)


# --- the store ----------------------------------------------------------------------------
class ResponseStore:
    """One model's view of a response store file (one thread at a time). Use :meth:`open`."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        model_key: str,
        model_id: int | None,
        readonly: bool,
        commit_every_s: float,
        commit_every_n: int,
    ):
        self._conn, self.path, self.model_key, self._model_id = conn, path, model_key, model_id
        self.readonly, self.commit_every_s, self.commit_every_n = readonly, commit_every_s, commit_every_n
        self.hits = 0  # responses returned by get_many
        self.written = 0  # new rows committed through this object
        self._pending: dict[tuple[int, bytes], tuple] = {}
        self._last_commit = time.monotonic()
        self._closed = False
        _OPEN.add(self)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike | None,
        model_key: str,
        *,
        readonly: bool = False,
        identity: Mapping | None = None,
        commit_every_s: float = 2.0,
        commit_every_n: int = 1000,
        busy_timeout_s: float = 30.0,
    ) -> ResponseStore:
        """The store at ``path`` (None: :func:`default_store_path`; created if missing unless
        ``readonly``) for ``model_key``. ``identity`` is recorded next to the key for people
        reading the file. Runs ``PRAGMA quick_check``: a corrupt file fails here."""
        path = Path(path if path is not None else default_store_path()).expanduser().absolute()
        conn = connect(path, readonly, busy_timeout_s)
        try:
            model_id = prepare(conn, path, model_key, identity, readonly, busy_timeout_s)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise sqlite_error(path, exc) from None
            raise
        return cls(conn, path, model_key, model_id, readonly, commit_every_s, commit_every_n)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def get_many(self, kind: str, keys: Iterable[str]) -> dict[str, tuple[object, dict | None]]:
        """{key: (value, timing)} for the keys this model has an answer for."""
        k = _kind(kind)
        out: dict[str, tuple[object, dict | None]] = {}
        want: dict[bytes, str] = {}
        for key in keys:
            req = bytes.fromhex(key)
            row = self._pending.get((k, req))  # put but not yet committed
            if row is not None:
                out[key] = self._row(row)
            else:
                want[req] = key
        reqs = list(want) if self._model_id is not None else []
        try:
            for i in range(0, len(reqs), _CHUNK):
                chunk = reqs[i : i + _CHUNK]
                sql = (
                    "SELECT model, kind, req, t, v, timing, crc FROM responses "
                    f"WHERE model=? AND kind=? AND req IN ({','.join('?' * len(chunk))})"
                )
                for row in self._conn.execute(sql, (self._model_id, k, *chunk)):
                    out[want[row[2]]] = self._row(row)
        except sqlite3.Error as exc:
            raise sqlite_error(self.path, exc) from None
        self.hits += len(out)
        return out

    def _row(self, row: tuple) -> tuple[object, dict | None]:
        model, kind, req, t, v, timing, crc = row
        if v is None or _crc(model, kind, req, t, v, timing) != crc:
            raise StoreError(
                f"response store {self.path} is corrupt (a stored response fails its checksum): delete it, or {FIX}"
            )
        return _decode(t, v), (None if timing is None else json.loads(timing))

    def put(self, kind: str, key: str, value, timing: Mapping | None = None) -> None:
        """Buffer one response; committed within ``commit_every_s`` / ``commit_every_n``
        (checked at each put: no background thread)."""
        if self.readonly or self._closed:
            raise StoreError(
                f"response store {self.path} was opened read-only or is closed: open it writable to add responses"
            )
        k, req = _kind(kind), bytes.fromhex(key)
        t, v = _encode(value)
        tj = None if timing is None else json.dumps(timing, separators=(",", ":"))
        self._pending[(k, req)] = (self._model_id, k, req, t, v, tj, _crc(self._model_id, k, req, t, v, tj))
        if len(self._pending) >= self.commit_every_n or time.monotonic() - self._last_commit >= self.commit_every_s:
            self.flush()

    def flush(self) -> int:
        """Commit the buffered responses in one transaction; the rows added."""
        if not self._pending or self.readonly:
            self._last_commit = time.monotonic()
            return 0
        if self._closed:
            raise StoreError(
                f"response store {self.path} was closed with {len(self._pending)} responses not written: {FIX}"
            )
        with _signals_deferred():
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                added = self._conn.executemany(
                    "INSERT OR IGNORE INTO responses VALUES (?,?,?,?,?,?,?)", list(self._pending.values())
                ).rowcount
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                raise sqlite_error(self.path, exc) from None  # the buffer stays: a later flush retries
            self._pending.clear()
            self.written += added
            self._last_commit = time.monotonic()
        return added

    def count(self, kind: str | None = None) -> int:
        """Committed responses of this model (of one kind, if given)."""
        if self._model_id is None:
            return 0
        sql, args = "SELECT count(*) FROM responses WHERE model=?", (self._model_id,)
        if kind is not None:
            sql, args = sql + " AND kind=?", (*args, _kind(kind))
        try:
            return self._conn.execute(sql, args).fetchone()[0]
        except sqlite3.Error as exc:
            raise sqlite_error(self.path, exc) from None

    def close(self) -> None:
        """Flush, then close; closing twice is fine."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            _OPEN.discard(self)
            try:
                self._conn.close()
            except sqlite3.Error as exc:
                raise sqlite_error(self.path, exc) from None
