"""llama.cpp's own checkpoint -> GGUF converter, taken from the pinned llama-cpp-python sdist.

``convert_hf_to_gguf.py`` (with its ``conversion`` package and ``gguf-py``) ships in the
llama.cpp source inside the llama-cpp-python sdist that ``scripts/setup.sh`` builds. The copy
used is always the one of the installed llama-cpp-python version, so the converter writes
exactly the GGUF the runtime reads. It is unpacked once into
``<cache>/llama.cpp-convert-<version>/`` from an sdist given by
``SLM_SUITE_LLAMA_CPP_SDIST``, or else fetched with ``pip download`` (setup does this, so
later runs need no network).

    python -m slm_tasks.adapters.hf_converter          # fetch it now; prints its folder
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from slm_tasks.adapters.store_keys import cache_dir
from slm_tasks.errors import SLMError

MARKER = "slm-converter.json"  # written last: its presence means the unpacked copy is complete
SDIST_ENV = "SLM_SUITE_LLAMA_CPP_SDIST"
# what convert_hf_to_gguf.py and gguf-py import (llama.cpp's requirements-convert_hf_to_gguf.txt)
NEEDS = {"torch": "torch", "transformers": "transformers", "sentencepiece": "sentencepiece",
         "numpy": "numpy", "yaml": "pyyaml", "safetensors": "safetensors", "requests": "requests"}  # fmt: skip
PIP_CONVERT = "pip install 'slm-suite[convert]'"
_KEEP = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/gguf/", "LICENSE")


class ConverterError(SLMError):
    """llama.cpp's converter cannot be found, fetched, run, or does not know a model."""


def llama_cpp_version() -> str:
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        raise ConverterError(
            "converting a checkpoint to GGUF needs llama-cpp-python (its llama.cpp source holds the "
            "converter): pip install 'slm-suite[cpu]'"
        ) from None


def missing_dependencies() -> list[str]:
    """The pip names of the converter's imports this Python lacks."""
    return [pip for mod, pip in NEEDS.items() if importlib.util.find_spec(mod) is None]


def converter_dir(fetch: bool = True) -> Path:
    """The unpacked converter of the installed llama-cpp-python version (fetched if absent)."""
    version = llama_cpp_version()
    folder = cache_dir() / f"llama.cpp-convert-{version}"
    if (folder / MARKER).is_file():
        return folder
    if not fetch:
        raise ConverterError(f"llama.cpp's converter for llama-cpp-python {version} is not in {folder}")
    with tempfile.TemporaryDirectory(prefix="slm-sdist-") as tmp:
        sdist = Path(os.environ[SDIST_ENV]) if os.environ.get(SDIST_ENV) else _download(version, Path(tmp))
        _unpack(sdist, version, folder)
    return folder


def describe(folder: Path) -> dict:
    """The converter's provenance (version, sdist name and sha256), as written when unpacked."""
    return json.loads((folder / MARKER).read_text(encoding="utf-8"))


def supported_architectures(folder: Path) -> list[str]:
    """The text-model architectures the converter registers (``TEXT_MODEL_MAP`` in its
    ``conversion/__init__.py``), read without importing it (that would import torch)."""
    tree = ast.parse((folder / "conversion" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        target = getattr(node, "target", None) or (node.targets[0] if isinstance(node, ast.Assign) else None)
        if isinstance(target, ast.Name) and target.id == "TEXT_MODEL_MAP":
            return sorted(ast.literal_eval(node.value))
    raise ConverterError(f"{folder}/conversion/__init__.py has no TEXT_MODEL_MAP: the converter copy is damaged")


def command(folder: Path, checkpoint: Path, outfile: Path, outtype: str) -> tuple[list[str], dict]:
    """(argv, env) that run the converter on ``checkpoint`` with this Python and the
    converter's own ``gguf-py`` first on the path (an installed ``gguf`` may be another version)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(folder / "gguf-py"), str(folder), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("HF_HUB_OFFLINE", "1")  # the tokenizer is read from the folder, never fetched
    env["PYTHONUNBUFFERED"] = "1"  # its per-tensor lines drive the progress bar as they come
    argv = [sys.executable, str(folder / "convert_hf_to_gguf.py"), str(checkpoint)]
    return argv + ["--outfile", str(outfile), "--outtype", outtype], env


def _download(version: str, into: Path) -> Path:
    spec = f"llama-cpp-python=={version}"
    argv = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", spec]
    argv += ["-d", str(into)]
    proc = subprocess.run(argv, capture_output=True, text=True)
    found = sorted(into.glob("llama_cpp_python-*.tar.gz"))
    if proc.returncode != 0 or not found:
        why = (proc.stderr.strip().splitlines() or ["no sdist downloaded"])[-1][:200]
        raise ConverterError(
            f"could not fetch the {spec} sdist that holds llama.cpp's converter ({why}). Where PyPI is "
            f"reachable run `python -m slm_tasks.adapters.hf_converter`, or set {SDIST_ENV}=<path to "
            f"llama_cpp_python-{version}.tar.gz>"
        )
    return found[0]


def _unpack(sdist: Path, version: str, folder: Path) -> None:
    try:
        with open(sdist, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        stage = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=_parent(folder)))
        try:
            with tarfile.open(sdist, "r:gz") as tar:
                top = f"llama_cpp_python-{version}/vendor/llama.cpp/"
                members = [
                    m for m in tar.getmembers() if m.name.startswith(top) and m.name[len(top) :].startswith(_KEEP)
                ]
                if not any(m.name.endswith("convert_hf_to_gguf.py") for m in members):
                    raise ConverterError(
                        f"'{sdist}' is not the llama-cpp-python {version} sdist (no {top}convert_hf_to_gguf.py)"
                    )
                for m in members:
                    m.name = m.name[len(top) :]
                tar.extractall(stage, members=members, filter="data")
            info = {"llama_cpp_python": version, "sdist": sdist.name, "sdist_sha256": digest}
            (stage / MARKER).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
            if folder.exists():  # an incomplete copy (no marker) of an interrupted unpack
                shutil.rmtree(folder)
            os.replace(stage, folder)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    except (OSError, tarfile.TarError) as exc:
        raise ConverterError(f"could not unpack llama.cpp's converter from '{sdist}' into {folder}: {exc}") from None


def _parent(folder: Path) -> Path:
    folder.parent.mkdir(parents=True, exist_ok=True)
    return folder.parent


def main() -> int:
    try:
        folder = converter_dir()
    except SLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(folder)
    missing = missing_dependencies()
    if missing:
        print(f"note: the converter also needs {', '.join(missing)}: {PIP_CONVERT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
