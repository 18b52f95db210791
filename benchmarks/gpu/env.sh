# ON THE DEVICE, after benchmarks/gpu/device-install.sh exited 0:  source benchmarks/gpu/env.sh
# The vLLM recipe's environment (PYTHONPATH=/tmp/site, no FlashInfer sampler, offline), then
# slm-suite's site in front of it and the mirror subset as the data folder.
STASH=${SLM_STASH:-/root/slm-stash}
# shellcheck source=/dev/null
. "$STASH/vllm-env.sh"
export PYTHONPATH="${SLM_SITE:-/tmp/slm-site}:$PYTHONPATH"
export SLM_DATA_DIR="${SLM_DEVICE_DATA:-/root/slm-data}/hub" HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1
export TOKENIZERS_PARALLELISM=false
