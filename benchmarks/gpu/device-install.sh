#!/usr/bin/env bash
# ON THE DEVICE, once per install command, with the carry folder of that command:
#   bash benchmarks/gpu/device-install.sh .gpucarry/k3
# Hands K/vllm to the vLLM recipe's own installer (K/tools/device-install.sh: stash, check,
# reassemble, pip --target /tmp/site), and stashes K/slm (pieces made by pack.py) in
# SLM_STASH. Once every piece has arrived it checks them, joins the split files, installs
# the wheels into SLM_SITE, then slm-suite itself from this working tree, and unpacks the
# mirror subset into SLM_DEVICE_DATA. Then: source benchmarks/gpu/env.sh
# Exit status: 0 = both installed, 3 = pieces still missing (send the next folder), else error.
set -euo pipefail
K=${1:?usage: device-install.sh CARRYDIR}
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
STASH=${SLM_STASH:-/root/slm-stash}
SITE=${SLM_SITE:-/tmp/slm-site}
DATA=${SLM_DEVICE_DATA:-/root/slm-data}
PY=${PYTHON:-python3}
K="$(cd "$K" && pwd)"

mkdir -p "$STASH"
cp -f "$K"/tools/vllm-env.sh "$STASH"/ 2>/dev/null || true
vrc=0
if [ -f "${VLLM_SITE:-/tmp/site}/.vllm-installed" ]; then
  echo "vllm: already installed"
elif [ -d "$K/vllm" ]; then
  bash "$K/tools/device-install.sh" "$K/vllm" || vrc=$?
else
  echo "vllm: no chunk in $K and not installed yet" >&2; vrc=3
fi
case $vrc in 0|3) ;; *) echo "vllm install failed ($vrc)" >&2; exit "$vrc" ;; esac

srcs=0
if [ -f "$SITE/.slm-installed" ]; then
  echo "slm: already installed in $SITE"
else
  if [ -d "$K/slm" ] && compgen -G "$K/slm/*" >/dev/null; then cp -f "$K"/slm/* "$STASH"/; fi
  cd "$STASH"
  if [ ! -f SLM.sha256 ]; then echo "slm: no manifest yet" >&2; exit 3; fi
  missing=0
  while read -r _ f; do [ -f "$f" ] || missing=$((missing + 1)); done < SLM.sha256
  total=$(wc -l < SLM.sha256)
  if [ "$missing" -gt 0 ]; then
    echo "slm: have $((total - missing))/$total pieces; send the next folder"
    srcs=3
  else
    t=$(date +%s)
    sha256sum --quiet -c SLM.sha256
    # join split files, check each whole file
    "$PY" - <<'EOF'
import hashlib, json, os, shutil
spec = json.load(open("ASSEMBLE.json"))
for name, info in spec.items():
    parts = info["parts"]
    if parts != [name]:
        with open(name, "wb") as out:
            for p in parts:
                with open(p, "rb") as f:
                    shutil.copyfileobj(f, out, 8 << 20)
        for p in parts:
            os.remove(p)
    h = hashlib.sha256()
    with open(name, "rb") as f:
        for chunk in iter(lambda: f.read(8 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != info["sha256"]:
        raise SystemExit(f"slm: {name}: checksum mismatch after joining")
print(f"slm: {len(spec)} files checked")
EOF
    # the wheels, and slm-suite from the tree that travelled with this command (the code under test)
    build=$(mktemp -d)
    cp -r "$REPO"/pyproject.toml "$REPO"/setup.py "$REPO"/README.md "$REPO"/slm_tasks "$REPO"/adapters \
      "$REPO"/leaderboards "$REPO"/task_configs "$build"/
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --target "$SITE" \
      ./*.whl "$build"
    rm -rf "$build"
    mkdir -p "$DATA"
    tar xJf mirror.tar.xz -C "$DATA"
    touch "$SITE/.slm-installed"
    echo "slm: installed $(ls ./*.whl | wc -l) wheels + slm-suite into $SITE, mirror into $DATA/hub in $(( $(date +%s) - t )) s"
  fi
fi
[ "$vrc" = 0 ] && [ "$srcs" = 0 ] && exit 0
exit 3
