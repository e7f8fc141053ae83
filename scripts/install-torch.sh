#!/usr/bin/env bash
# Install torch and torchvision, at the versions constraints.txt pins, into a Python environment:
#   bash scripts/install-torch.sh [--dry-run] PYTHON
# - no NVIDIA GPU (nvidia-smi absent or failing): the CPU build from PyTorch's CPU wheel index, as
#   docker/Dockerfile does; when that index does not answer within 5 s, pip's configured index instead
#   (which may find a local CPU wheel, or else the CUDA build);
# - an NVIDIA GPU: the CUDA build from pip's configured index (several GB with its NVIDIA libraries).
# --dry-run prints the pip command instead of running it. TORCH_CPU_INDEX names another CPU index.
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
if [[ "${1:-}" == "--dry-run" ]]; then
  dry_run=1
  shift
fi
python="${1:?usage: bash scripts/install-torch.sh [--dry-run] PYTHON}"
cpu_index="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
pip=("$python" -m pip install -qq --disable-pip-version-check -c constraints.txt torch torchvision)

answers() {  # the index lists torch within 5 s (proxies and certificates as Python's urllib finds them)
  "$python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5).close()' "$1/torch/" \
    >/dev/null 2>&1
}

if nvidia-smi -L >/dev/null 2>&1; then
  echo "==> NVIDIA GPU found: installing the CUDA build of torch and torchvision from pip's index (several GB)"
elif answers "$cpu_index"; then
  echo "==> no NVIDIA GPU: installing the CPU build of torch and torchvision from $cpu_index"
  pip+=(--index-url "$cpu_index")
else
  echo "==> no NVIDIA GPU, but $cpu_index cannot be reached: installing torch and torchvision from pip's configured index"
fi
if (( dry_run )); then
  echo "${pip[*]}"
else
  "${pip[@]}"
fi
