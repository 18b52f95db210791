"""A checkpoint folder -> a GGUF file slm-llamacpp loads, converted once per content.

llama.cpp's own converter (:mod:`hf_converter`, the copy of the installed llama-cpp-python)
writes the GGUF at the checkpoint's own precision (bf16, f16 or f32 as its weights are
stored); the usual rules then apply to that file (scores on an f16 copy by default,
``dequantise=``). The result is cached under ``<cache>/converted/`` by the content digest of
the folder's weight, config and tokenizer files (``store_keys.model_identity``) and the
converter's version, so the same weights convert once, wherever the folder lives. Beside each
GGUF a ``.json`` holds its provenance, which the cost record and the board row carry.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

from slm_tasks.adapters import hf_converter
from slm_tasks.adapters.hf_converter import PIP_CONVERT, ConverterError
from slm_tasks.adapters.store_keys import cache_dir, model_identity

log = logging.getLogger(__name__)

# safetensors dtype -> the converter's --outtype of the same precision, and its bytes per weight
_PRECISION = {"F32": ("f32", 4), "BF16": ("bf16", 2), "F16": ("f16", 2)}
_CONFIG_DTYPE = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}
_TENSOR_LINE = re.compile(r"^INFO:hf-to-gguf:\S+,\s+torch\.\w+ --> ")
_HEADROOM = 1.05  # the converter's output also holds the vocabulary and metadata


def converted_gguf(folder: Path, label: str, progress: bool = True) -> tuple[Path, dict]:
    """(the GGUF converted from checkpoint ``folder``, its provenance); converts only when
    the cache has no conversion of the same content by the same converter version."""
    digest = model_identity(folder)
    version = hf_converter.llama_cpp_version()
    dtype, n_tensors, weight_bytes = _weights(folder)
    outtype, _ = _PRECISION[dtype]
    cache = cache_dir() / "converted"
    # named by content alone: the same weights in another folder (or under another name) reuse it
    out = cache / f"{digest[:16]}-{outtype}-llama-cpp-python-{version}.gguf"
    sidecar = out.with_name(out.name + ".json")
    if out.is_file() and sidecar.is_file():  # the folder's own name: the content is what was converted
        return out, {**json.loads(sidecar.read_text(encoding="utf-8")), "folder": folder.name}

    converter = hf_converter.converter_dir()
    _check_architecture(folder, converter)
    missing = hf_converter.missing_dependencies()
    if missing:
        raise ConverterError(
            f"converting checkpoint '{folder}' to GGUF needs {', '.join(missing)}, not installed: {PIP_CONVERT}"
        )
    cache.mkdir(parents=True, exist_ok=True)
    need = int(weight_bytes * _HEADROOM) + (64 << 20)
    free = shutil.disk_usage(cache).free
    if free < need:
        raise ConverterError(
            f"converting checkpoint '{folder}' needs about {need / 1e9:.2f} GB in {cache}, and {free / 1e9:.2f} GB "
            "are free: free space there, or set SLM_SUITE_CACHE to a folder on a larger disk"
        )
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    t0 = time.perf_counter()
    try:
        _run(converter, folder, tmp, outtype, n_tensors, label, progress)
        seconds = time.perf_counter() - t0
        info = {
            "kind": "checkpoint",
            "folder": folder.name,
            "sha256": digest,
            "precision": outtype,
            "converter": f"llama.cpp convert_hf_to_gguf.py of llama-cpp-python {version}",
            "converter_sdist_sha256": hf_converter.describe(converter).get("sdist_sha256"),
            "convert_seconds": round(seconds, 1),
            "gguf_bytes": tmp.stat().st_size,
        }
        tmp_sidecar = sidecar.with_name(f".{sidecar.name}.{os.getpid()}.tmp")
        tmp_sidecar.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, out)
        os.replace(tmp_sidecar, sidecar)  # written last: a GGUF without it is converted again
    except OSError as exc:
        raise ConverterError(
            f"could not write the converted GGUF of '{folder}' to {cache}: {exc.strerror}. Free space there, "
            "or set SLM_SUITE_CACHE to another folder"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    log.info("slm-llamacpp: converted %s to %s in %.1f s", folder, out, seconds)
    return out, info


def _weights(folder: Path) -> tuple[str, int, int]:
    """(the stored precision, the number of tensors, the bytes of the weights): read from the
    safetensors headers (the most common float type, by weights), else config.json's dtype."""
    counts: collections.Counter = collections.Counter()
    n_tensors = total = 0
    for f in sorted(folder.glob("*.safetensors")):
        total += f.stat().st_size
        try:
            with open(f, "rb") as fh:
                (size,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(min(size, 100 << 20)))
            if not isinstance(header, dict):
                raise ValueError("its header is not a table of tensors")
        except (OSError, struct.error, ValueError) as exc:
            raise ConverterError(
                f"checkpoint weights '{f}' are not a readable safetensors file ({exc}): save the model again"
            ) from None
        for name, t in header.items():
            if name == "__metadata__":
                continue
            n_tensors += 1
            if isinstance(t, dict) and t.get("dtype") in _PRECISION:
                start, end = t["data_offsets"]
                counts[t["dtype"]] += end - start
    if counts:
        return counts.most_common(1)[0][0], n_tensors, total
    total = sum(f.stat().st_size for f in folder.glob("*.bin"))
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    dtype = _CONFIG_DTYPE.get(str(config.get("torch_dtype") or config.get("dtype") or "float32"), "F32")
    return dtype, n_tensors, total


def _check_architecture(folder: Path, converter: Path) -> None:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    archs = config.get("architectures") or []
    known = hf_converter.supported_architectures(converter)
    if not archs or archs[0] not in known:
        what = f"architecture {archs[0]!r}" if archs else "no architecture (config.json lists none)"
        raise ConverterError(
            f"checkpoint '{folder}' has {what}, which llama.cpp's converter does not know: it converts the "
            f"{len(known)} architectures in TEXT_MODEL_MAP of {converter / 'conversion' / '__init__.py'} "
            f"(e.g. LlamaForCausalLM, Gemma3ForCausalLM, Qwen2ForCausalLM); evaluate it with --backend vllm"
        )


def _run(converter: Path, folder: Path, outfile: Path, outtype: str, n_tensors: int, label: str, progress: bool):
    from tqdm import tqdm

    argv, env = hf_converter.command(converter, folder, outfile, outtype)
    tail: collections.deque = collections.deque(maxlen=40)
    bar = tqdm(total=n_tensors or None, desc=f"converting {label} to GGUF ({outtype})", unit="tensor",
               disable=not progress, leave=False)  # fmt: skip
    with bar, subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            tail.append(line.rstrip())
            if _TENSOR_LINE.match(line) and bar.n < (bar.total or 1 << 62):
                bar.update(1)
        rc = proc.wait()
    if rc != 0:
        raise ConverterError(
            f"llama.cpp's converter failed on checkpoint '{folder}' (exit {rc}): {_reason(tail)}. Its folder must be "
            "loadable by transformers (config.json, weights, tokenizer files)"
        )


def _reason(lines) -> str:
    """The converter's own last word: its exception line, else its last output line."""
    for line in reversed(lines):
        if re.match(r"^\w*(Error|Exception)\b|^\w+Error:", line) or "Error:" in line:
            return line.strip()[:300]
    return (lines[-1].strip() if lines else "no output")[:300]
