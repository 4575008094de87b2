#!/usr/bin/env bash
# The GPU check (README "Performance"): one GPU, 12 minutes of its time in all, nothing
# downloaded. Run it from the repository where rap is installed on a CUDA torch, or give
# WHEELHOUSE=DIR (`make wheelhouse`'s folder, its parts already on the node) to install rap
# offline into a folder first. Figures go to $OUT (or this folder) as gpu_check.json and .log.
#   [WHEELHOUSE=DIR] bash bench/gpu_check.sh [--budget-s 480] [other flags of gpu_check.py]
set -uo pipefail
cd "$(dirname "$0")"
out="${OUT:-.}"
python="${PYTHON:-python3}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=120
if [ -n "${WHEELHOUSE:-}" ]; then
    site="${RAP_SITE:-$(mktemp -d)/site}"
    started=$(date +%s)
    for part in "$WHEELHOUSE"/part-*/; do
        PYTHON="$python" bash "$part/install.sh" --target "$site" --upgrade -q || exit 1
    done
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    echo "installed the wheelhouse into $site in $(( $(date +%s) - started )) s"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# the script keeps to --budget-s (480 by default); this is the backstop
timeout "${RAP_GPU_CHECK_TIMEOUT_S:-600}" "$python" gpu_check.py --out "$out/gpu_check.json" "$@" \
    2>&1 | tee "$out/gpu_check.log"
exit "${PIPESTATUS[0]}"
