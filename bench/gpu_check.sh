#!/usr/bin/env bash
# The GPU path in one run, under 10 minutes on one GPU: the quick demo on CUDA at fp16, classifier and U-Net training
# throughput against a plain PyTorch AMP loop (ratio side by side), predict's fp16 answers against fp32.
# Usage: bench/gpu_check.sh [OUT]            (on a machine with a CUDA GPU; writes OUT/gpu_check.json)
#        bench/gpu_check.sh OUT --device cpu (a dry run of the same steps at toy sizes on the CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu_check_out}; shift || true
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: no GPU visible"
PYTHONUNBUFFERED=1 timeout 600 python bench/gpu_check.py --out "$out" "$@"
