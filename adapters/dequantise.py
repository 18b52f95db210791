"""``dequantise=``: scores computed on a copy of the GGUF re-encoded by llama.cpp's own
quantiser (f32, f16 or bf16), cached by the source's content."""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

from slm_tasks.adapters.hardware import usable_cores
from slm_tasks.adapters.llamacpp_lib import LlamaCppError, log_tail
from slm_tasks.adapters.store_keys import cache_dir, model_identity

log = logging.getLogger(__name__)

DEQUANTISE = {"f32": "LLAMA_FTYPE_ALL_F32", "f16": "LLAMA_FTYPE_MOSTLY_F16", "bf16": "LLAMA_FTYPE_MOSTLY_BF16"}
# Scores are computed on an f16 copy unless asked otherwise: the quantised kernels round
# activations to 8 bits and agreed with lm-eval's hf fp32 model on fewer documents, more
# slowly (benchmarks/RESULTS-llamacpp.md); an evaluation reports the weights, not a kernel.
DEFAULT_DEQUANTISE = "f16"


def dequantise_kind(value) -> str | None:
    """The format a ``dequantise=`` value asks the scores to be computed in; None: as stored."""
    if value in (None, "", False) or str(value).lower() in ("none", "no", "false", "native", "stored"):
        return None
    kind = str(value).lower()
    if kind not in DEQUANTISE:
        raise LlamaCppError(
            f"dequantise={value!r} is not supported: use one of {', '.join(DEQUANTISE)} "
            f"(compute on a copy re-encoded in that format), or stored (compute in the "
            f"stored format); left out, it computes on a {DEFAULT_DEQUANTISE} copy"
        )
    return kind


def dequantised_copy(lib, path: Path, kind: str) -> Path:
    """``path`` re-encoded as ``kind`` (f32 is exact; f16/bf16 round each weight once), made
    with llama.cpp's own quantiser and cached next to other slm-suite files, named by the
    source's content: every install of the same weights (each venv has its own path) shares
    one copy."""
    tag = model_identity(path)[:12]
    cache = cache_dir() / "dequantised"
    out = cache / f"{path.stem}-{tag}-{kind}.gguf"
    if out.is_file():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    params = lib.llama_model_quantize_default_params()
    params.ftype = getattr(lib, DEQUANTISE[kind])
    params.allow_requantize = True
    params.nthread = usable_cores()
    log.info("slm-llamacpp: writing a %s copy of %s to %s", kind, path.name, out)
    try:
        rc = lib.llama_model_quantize(str(path).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0:
            raise LlamaCppError(
                f"llama.cpp could not re-encode '{path}' as {kind} (code {rc}){log_tail()}. "
                f"Check free space in {cache} (set SLM_SUITE_CACHE to move it), "
                "or leave dequantise out"
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
