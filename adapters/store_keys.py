"""Keys of the response store: what names a model (its weights' digest and every setting
that can change an answer) and what names a request (its exact arguments).

A key is a sha256 over canonical JSON, so equal settings give equal keys whatever their
order or spelling (2048 and 2048.0); a value that JSON cannot name exactly is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import numbers
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from slm_tasks.errors import SLMError

log = logging.getLogger(__name__)

KINDS = {"loglikelihood": 1, "loglikelihood_rolling": 2, "generate_until": 3}
# files of a checkpoint folder that can change an answer: weights, configs, tokenizers, code
_MODEL_SUFFIXES = frozenset(
    {
        ".gguf",
        ".safetensors",
        ".bin",
        ".pt",
        ".pth",
        ".ckpt",
        ".h5",
        ".msgpack",
        ".json",
        ".jinja",
        ".model",
        ".tiktoken",
        ".txt",
        ".vocab",
        ".py",
    }
)


class StoreError(SLMError):
    """The response store cannot be used; the message names the file and the fix."""


def cache_dir() -> Path:
    """slm-suite's cache folder: ``$SLM_SUITE_CACHE`` or ``~/.cache/slm-suite``."""
    return Path(os.environ.get("SLM_SUITE_CACHE") or Path.home() / ".cache" / "slm-suite")


# --- keys ---------------------------------------------------------------------------------
def _is_bool(x) -> bool:
    # numpy's bool is neither an int subclass nor a numbers.Integral
    return isinstance(x, bool) or getattr(getattr(x, "dtype", None), "kind", None) == "b"


def _canon(x, where: str):
    if x is None or isinstance(x, str) or _is_bool(x):
        return x if x is None or isinstance(x, str) else bool(x)
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real):
        f = float(x)
        if not math.isfinite(f):
            raise StoreError(f"cannot key {where} = {f!r}: only finite numbers name a setting")
        # 2048 and 2048.0, temperature 0 and 0.0: one setting, one key
        return int(f) if f.is_integer() and abs(f) < 2**53 else f
    if isinstance(x, Mapping):
        bad = [k for k in x if not isinstance(k, str)]
        if bad:
            raise StoreError(f"cannot key {where}: key {bad[0]!r} is not a string")
        return {k: _canon(v, f"{where}[{k!r}]") for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_canon(v, f"{where}[{i}]") for i, v in enumerate(x)]
    raise StoreError(f"cannot key {where}: a {type(x).__name__} is not JSON (pass str, number, bool, list or dict)")


def canonical_json(x, where: str = "value") -> str:
    """Sorted keys, no spaces, ASCII, integral floats as ints: equal settings, equal text."""
    return json.dumps(_canon(x, where), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def store_key(identity: Mapping) -> str:
    """Digest of everything that can change an answer (the backend builds ``identity``)."""
    if not isinstance(identity, Mapping):
        raise StoreError(f"cannot key a {type(identity).__name__}: the model identity is a dict")
    return hashlib.sha256(b"slm-suite.store-key/1\n" + canonical_json(identity, "identity").encode()).hexdigest()


def request_key(kind: str, args: tuple) -> str:
    """Digest of one request's exact ``Instance.args``."""
    _kind(kind)
    return hashlib.sha256(f"{kind}\n{canonical_json(list(args), f'{kind} args')}".encode()).hexdigest()


def _kind(kind: str) -> int:
    try:
        return KINDS[kind]
    except (KeyError, TypeError):
        raise ValueError(f"unknown request kind {kind!r}: one of {', '.join(KINDS)}") from None


# --- model identity -----------------------------------------------------------------------
def _sha256_file(p: Path) -> bytes:
    with open(p, "rb") as f:
        return hashlib.file_digest(f, "sha256").digest()


def _model_files(folder: Path) -> list[Path]:
    return sorted(
        (
            p
            for p in folder.iterdir()
            if not p.name.startswith(".") and p.suffix.lower() in _MODEL_SUFFIXES and p.is_file()
        ),
        key=lambda p: p.name,
    )


def _signature(p: Path) -> tuple[int, int, str]:
    """(size, mtime_ns, listing): while these hold, a cached digest holds."""
    if not p.is_dir():
        st = p.stat()
        return st.st_size, st.st_mtime_ns, ""
    stats = [(f.name, f.stat()) for f in _model_files(p)]
    listing = json.dumps([[n, s.st_size, s.st_mtime_ns] for n, s in stats]).encode()
    return (
        sum(s.st_size for _, s in stats),
        max((s.st_mtime_ns for _, s in stats), default=0),
        hashlib.sha256(listing).hexdigest(),
    )


def _digest(p: Path) -> str:
    if not p.is_dir():
        return _sha256_file(p).hex()
    files = _model_files(p)
    if not files:
        raise StoreError(
            f"model folder {p} holds no weight, config or tokenizer files "
            "(*.safetensors, *.gguf, config.json, ...): pass the checkpoint folder itself"
        )
    h = hashlib.sha256(b"slm-suite.checkpoint/1\n")
    for f in files:  # names count: two files swapping contents make another model
        h.update(f.name.encode() + b"\0" + _sha256_file(f))
    return h.hexdigest()


def model_identity(path: str | os.PathLike, *, cache: str | os.PathLike | None = None) -> str:
    """sha256 of a weights file, or of a checkpoint folder's weight/config/tokenizer files
    (sorted, names included), cached by (resolved path, size, mtime_ns) in
    ``<cache>/model-identity.sqlite``: a file rewritten with its size and mtime kept keeps
    its old digest. Without a usable cache the digest is computed every time."""
    try:
        p = Path(path).expanduser().resolve(strict=True)
    except OSError:
        raise StoreError(f"model {path} does not exist: pass an existing weights file or checkpoint folder") from None
    sig = _signature(p)
    row, conn = (str(p), *sig), None
    try:
        folder = Path(cache) if cache is not None else cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(folder / "model-identity.sqlite", timeout=30, isolation_level=None)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS identity(path TEXT PRIMARY KEY, size INTEGER, "
            "mtime_ns INTEGER, listing TEXT, sha256 TEXT NOT NULL)"
        )
        hit = conn.execute(
            "SELECT sha256 FROM identity WHERE path=? AND size=? AND mtime_ns=? AND listing=?", row
        ).fetchone()
        if hit:
            conn.close()
            return hit[0]
    except (sqlite3.Error, OSError) as exc:  # the cache only saves time: go on without it
        log.info("model identity cache unavailable (%s); hashing %s", exc, p)
        if conn is not None:
            conn.close()
            conn = None
    try:
        digest = _digest(p)
    except OSError as exc:
        if conn is not None:
            conn.close()
        raise StoreError(f"cannot read model {p} ({exc.strerror}): check its permissions") from None
    if conn is not None:
        with contextlib.closing(conn), contextlib.suppress(sqlite3.Error):
            if _signature(p) == sig:  # changed while hashing: cache nothing
                conn.execute("INSERT OR REPLACE INTO identity VALUES (?,?,?,?,?)", (*row, digest))
    return digest
