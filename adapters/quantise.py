"""GGUF files re-encoded by llama.cpp's own quantiser (``llama_model_quantize``), in any of
its formats, cached by the source's content and the format.

One function makes every copy: the ``dequantise=`` copies the scores are computed on (f32,
f16, bf16; ``adapters/dequantise.py``) and the formats of the quantisation sweep (F16, Q8_0,
Q6_K, Q5_K_M, Q4_K_M, Q3_K_M, Q4_0, ...; ``slm_tasks/quant/``). A copy is written under a
temporary name and renamed into place, so a killed quantiser leaves no file that looks
finished, and two processes asking for the same copy both end with a whole one.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from pathlib import Path

from slm_tasks.adapters.hardware import usable_cores
from slm_tasks.adapters.llamacpp_lib import LlamaCppError, import_llama_cpp, install_log_callback, log_tail
from slm_tasks.adapters.store_keys import cache_dir, model_identity

log = logging.getLogger(__name__)

# format name (as llama.cpp's `llama-quantize` spells it) -> llama.cpp's ftype constant
FORMATS = {
    "F32": "LLAMA_FTYPE_ALL_F32",
    "BF16": "LLAMA_FTYPE_MOSTLY_BF16",
    "F16": "LLAMA_FTYPE_MOSTLY_F16",
    "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "Q6_K": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "Q5_K_M": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "Q5_K_S": "LLAMA_FTYPE_MOSTLY_Q5_K_S",
    "Q5_1": "LLAMA_FTYPE_MOSTLY_Q5_1",
    "Q5_0": "LLAMA_FTYPE_MOSTLY_Q5_0",
    "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "Q4_K_S": "LLAMA_FTYPE_MOSTLY_Q4_K_S",
    "Q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1",
    "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "IQ4_NL": "LLAMA_FTYPE_MOSTLY_IQ4_NL",
    "Q3_K_L": "LLAMA_FTYPE_MOSTLY_Q3_K_L",
    "Q3_K_M": "LLAMA_FTYPE_MOSTLY_Q3_K_M",
    "Q3_K_S": "LLAMA_FTYPE_MOSTLY_Q3_K_S",
    "Q2_K": "LLAMA_FTYPE_MOSTLY_Q2_K",
}
# Bits per weight of each format's main tensors (llama.cpp's quantize table): the order of
# precision, most precise first. A mix (_K_M) ranks by its main type.
BITS = {
    "F32": 32.0,
    "BF16": 16.0,  # 8 bits of mantissa: below F16's 11 for weights of an ordinary range
    "F16": 16.5,
    "Q8_0": 8.5,
    "Q6_K": 6.56,
    "Q5_K_M": 5.69,
    "Q5_1": 6.0,
    "Q5_K_S": 5.54,
    "Q5_0": 5.5,
    "Q4_K_M": 4.89,
    "Q4_1": 5.0,
    "IQ4_NL": 4.5,
    "Q4_K_S": 4.58,
    "Q4_0": 4.5,
    "Q3_K_L": 4.27,
    "Q3_K_M": 3.91,
    "Q3_K_S": 3.5,
    "Q2_K": 3.35,
}
UNQUANTISED = ("F32", "BF16", "F16")


def format_name(value: str) -> str:
    """The canonical name of a format (case-insensitive: q4_k_m -> Q4_K_M); an unknown one is
    one line naming the known ones."""
    name = str(value).strip().upper()
    if name not in FORMATS:
        raise LlamaCppError(f"unknown quantisation format '{value}': use one of {', '.join(FORMATS)}")
    return name


def by_precision(formats) -> list[str]:
    """``formats`` (canonical names), most precise first."""
    return sorted(formats, key=lambda f: -BITS[f])


def cache_path(source: Path, fmt: str, sha256: str | None = None) -> Path:
    """Where the ``fmt`` copy of ``source`` lives: named by the source's content, so every
    install of the same weights (each venv has its own path) shares one copy."""
    tag = (sha256 or model_identity(source))[:12]
    return cache_dir() / "quantised" / f"{source.stem}-{tag}-{fmt}.gguf"


def quantise(source: Path, fmt: str, out: Path | None = None, threads: int | None = None) -> tuple[Path, float]:
    """``source`` re-encoded as ``fmt`` by llama.cpp's quantiser: (the file, seconds spent
    quantising; 0.0 when the cached copy was reused). ``out`` defaults to :func:`cache_path`."""
    fmt = format_name(fmt)
    source = Path(source)
    out = Path(out) if out is not None else cache_path(source, fmt)
    if out.is_file():
        return out, 0.0
    llama_cpp, lib = import_llama_cpp()
    install_log_callback(llama_cpp, verbose=False)  # llama.cpp's per-tensor log: kept for errors only
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LlamaCppError(
            f"cannot create {out.parent} for the {fmt} copy ({exc.strerror}); set SLM_SUITE_CACHE to "
            "a folder you can write"
        ) from None
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    params = lib.llama_model_quantize_default_params()
    params.ftype = getattr(lib, FORMATS[fmt])
    params.allow_requantize = True  # a quantised source is re-encoded (its weights as they are)
    params.nthread = threads or usable_cores()
    log.info("slm-llamacpp: writing a %s copy of %s to %s", fmt, source.name, out)
    t0 = time.perf_counter()
    try:
        rc = lib.llama_model_quantize(str(source).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0:
            raise LlamaCppError(
                f"llama.cpp could not re-encode '{source}' as {fmt} (code {rc}){log_tail()}. "
                f"Check free space in {out.parent} (set SLM_SUITE_CACHE to move it)"
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out, time.perf_counter() - t0


def stored_format(path: Path) -> str | None:
    """The format ``path`` is stored in (``general.file_type`` as a :data:`FORMATS` name, e.g.
    Q4_1), read from its metadata without loading the weights; None when it does not say."""
    from slm_tasks.adapters.llamacpp_lib import ftype_name

    llama_cpp, lib = import_llama_cpp()
    install_log_callback(llama_cpp, verbose=False)
    params = lib.llama_model_default_params()
    params.vocab_only = True
    model = lib.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        return None
    try:
        buf = ctypes.create_string_buffer(64)
        n = lib.llama_model_meta_val_str(model, b"general.file_type", buf, len(buf))
        value = buf.value.decode() if n >= 0 else ""
    finally:
        lib.llama_model_free(model)
    name = ftype_name(lib, int(value)) if value.isdigit() else None
    return {"ALL_F32": "F32"}.get(name, name)
