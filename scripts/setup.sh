#!/usr/bin/env bash
# Creates a venv (default .venv) with slm-suite and everything its tests need.
# - llama-cpp-python has no binary wheel on PyPI: pip compiles llama.cpp (about 6 min on 2 cores).
# - torch (for llama.cpp's checkpoint -> GGUF converter and the GGUF -> checkpoint export) is
#   installed first, on its own and pinned, so that pip takes the CPU build where the machine
#   has one (a local wheel, e.g. in /opt/wheels) rather than the CUDA build PyPI serves under
#   the same version. Elsewhere set TORCH, e.g. TORCH="torch --index-url https://download.pytorch.org/whl/cpu".
# - Last, the converter itself is unpacked from the llama-cpp-python sdist of the installed
#   version (slm_tasks.adapters.hf_converter), so converting later needs no network.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
TORCH="${TORCH:-torch==2.13.0}"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
# shellcheck disable=SC2086  # TORCH may carry pip options
"$VENV/bin/python" -m pip install -q --disable-pip-version-check $TORCH
CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
  "$VENV/bin/python" -m pip install --disable-pip-version-check -e ".[cpu,plot,cluster,test,convert,export]"
"$VENV/bin/python" -m slm_tasks.adapters.hf_converter
echo "ready: . $VENV/bin/activate"
