"""``dequantise=``: scores computed on a copy of the GGUF re-encoded by llama.cpp's own
quantiser (f32, f16 or bf16; made by ``adapters/quantise.py``), cached by the source's content."""

from __future__ import annotations

from pathlib import Path

from slm_tasks.adapters.llamacpp_lib import LlamaCppError
from slm_tasks.adapters.quantise import quantise
from slm_tasks.adapters.store_keys import cache_dir, model_identity

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
    """``path`` re-encoded as ``kind`` (f32 is exact; f16/bf16 round each weight once) by
    llama.cpp's own quantiser (:func:`slm_tasks.adapters.quantise.quantise`), cached next to
    other slm-suite files, named by the source's content. ``lib`` is unused (kept for callers)."""
    tag = model_identity(path)[:12]
    out = cache_dir() / "dequantised" / f"{path.stem}-{tag}-{kind}.gguf"
    try:
        return quantise(path, kind, out=out)[0]
    except LlamaCppError as exc:
        raise LlamaCppError(f"{exc}, or leave dequantise out") from None
