#!/usr/bin/env bash
# Creates a venv (default .venv) with slm-suite and everything its tests need.
# llama-cpp-python has no binary wheel on PyPI: pip compiles llama.cpp (about 6 min on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
  "$VENV/bin/python" -m pip install --disable-pip-version-check -e ".[cpu,plot,cluster,test]"
echo "ready: . $VENV/bin/activate"
