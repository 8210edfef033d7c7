#!/usr/bin/env bash
# Sourced by pack.sh and check.sh: lays NVIDIA's PyPI wheels out as a CUDA home, once.
#
#   cuda_home DIR WHEEL-SPEC...   downloads the wheels and unpacks them as DIR, unless DIR
#                                 already has nvcc.

cuda_home() {
  local cuda="$1"
  shift
  [ -x "$cuda/bin/nvcc" ] && return 0
  local wheels unpacked
  wheels="$(mktemp -d)"
  python3 -m pip download --quiet --no-deps -d "$wheels" "$@"
  unpacked="$(mktemp -d)"
  for w in "$wheels"/*.whl; do (cd "$unpacked" && python3 -m zipfile -e "$w" .); done
  mkdir -p "$(dirname "$cuda")"
  rm -rf "$cuda"
  mv "$unpacked/nvidia/cu13" "$cuda"
  chmod +x "$cuda"/bin/* "$cuda"/nvvm/bin/*
  # nvcc.profile looks for headers and libraries under targets/x86_64-linux.
  mkdir -p "$cuda/targets/x86_64-linux"
  ln -sfn "$cuda/include" "$cuda/targets/x86_64-linux/include"
  ln -sfn "$cuda/lib" "$cuda/targets/x86_64-linux/lib"
  ln -sfn "$cuda/lib" "$cuda/lib64"
  rm -rf "$wheels" "$unpacked"
}

# The compiler's wheels: nvcc, its device front end, and the headers candle's kernels include.
CUDA_COMPILER_WHEELS=(
  "nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-crt==13.0.*"
  "nvidia-nvvm==13.0.*" "nvidia-cuda-cccl==13.0.*"
)
