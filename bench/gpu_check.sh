#!/usr/bin/env bash
# The GPU check (README "Performance"): one GPU, under 10 minutes, nothing downloaded. Run it
# from the repository in an environment where rap is installed on a CUDA torch
# (`pip install -e .`); figures go to $OUT (or this folder) as gpu_check.json and .log.
#   bash bench/gpu_check.sh [extra flags of bench/gpu_check.py]
set -uo pipefail
cd "$(dirname "$0")"
out="${OUT:-.}"
python="${PYTHON:-python}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=120
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout "${RAP_GPU_CHECK_TIMEOUT_S:-570}" "$python" gpu_check.py --out "$out/gpu_check.json" "$@" \
    2>&1 | tee "$out/gpu_check.log"
exit "${PIPESTATUS[0]}"
