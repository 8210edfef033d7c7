#!/usr/bin/env bash
# Type-checks the `cuda` feature of the CLI and the window on a machine with no GPU and no CUDA
# install: candle's CUDA kernels are compiled by nvcc from NVIDIA's PyPI wheels (about 100 MB,
# unpacked once under ~/.cache/clawdesk/cuda-13.0-nvcc), and every `#[cfg(feature = "cuda")]`
# line of ours is compiled. Nothing is linked, so no CUDA library or driver is needed.
# Measured: 8 minutes on 2 cores with the CPU build's dependencies already checked. Too long
# for CI's budget; run it when touching code behind the feature (bench/cuda/pack.sh builds and
# links the whole binary for a GPU machine).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cuda="${CLAWDESK_CUDA_NVCC_HOME:-$HOME/.cache/clawdesk/cuda-13.0-nvcc}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/clawdesk/target}"

source "$root/bench/cuda/home.sh"
cuda_home "$cuda" "${CUDA_COMPILER_WHEELS[@]}"

export PATH="$cuda/bin:$PATH" CUDA_ROOT="$cuda" CUDA_PATH="$cuda" CUDA_HOME="$cuda"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
cd "$root"
cargo check --locked -p clawdesk -p clawdesk-app --features clawdesk/cuda,clawdesk-app/cuda
