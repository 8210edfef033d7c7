#!/usr/bin/env bash
# Builds the `cuda` feature of the headless `clawdesk` binary on a machine without a GPU or a
# CUDA install, and packs it for a GPU machine that reaches no registry.
#
# nvcc, its headers and the CUDA libraries candle links (cudart, cuBLAS, cuRAND, NVRTC) come
# from NVIDIA's PyPI wheels (CUDA 13.0), laid out as a CUDA home under
# ~/.cache/clawdesk/cuda-13.0 ($CLAWDESK_CUDA_HOME); the driver's libcuda, which only a GPU
# machine has, is linked against a stub of the symbols cudarc uses, with the real library's
# soname so the driver's copy is loaded at run time. candle's kernels are compiled for sm_90
# (Hopper: H100/H200) unless CUDA_COMPUTE_CAP says otherwise. The result, .gpu/ in the repo
# root (git-ignored), holds the stripped binary and the shared libraries it links beyond
# glibc; bench/cuda/run.sh runs the GPU benchmarks from it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cuda="${CLAWDESK_CUDA_HOME:-$HOME/.cache/clawdesk/cuda-13.0}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/clawdesk/target}"

source "$root/bench/cuda/home.sh"
if [ ! -x "$cuda/bin/nvcc" ]; then
  cuda_home "$cuda" "${CUDA_COMPILER_WHEELS[@]}" \
    "nvidia-cublas==13.0.*" "nvidia-curand==10.4.*" "nvidia-cuda-nvrtc==13.0.*"
  for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libnvrtc.so.13 libcurand.so.10; do
    ln -sf "$lib" "$cuda/lib/${lib%.so.*}.so"
  done
fi

# libcuda comes with the driver, so the wheels have none: link against a stub that defines
# every driver function cudarc declares, under the real library's soname.
if [ ! -e "$cuda/lib/stubs/libcuda.so" ]; then
  (cd "$root" && cargo fetch --locked)
  version="$(grep -A1 '^name = "cudarc"$' "$root/Cargo.lock" | sed -n 's/^version = "\(.*\)"$/\1/p')"
  bindings="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"cudarc-$version"/src/driver/sys/mod.rs | head -1)"
  mkdir -p "$cuda/lib/stubs"
  grep -oE 'pub unsafe fn cu[A-Z][A-Za-z0-9_]*' "$bindings" | sort -u \
    | awk '{print "void " $4 "(void) {}"}' >"$cuda/lib/stubs/libcuda.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$cuda/lib/stubs/libcuda.so" "$cuda/lib/stubs/libcuda.c"
fi

export PATH="$cuda/bin:$PATH" CUDA_ROOT="$cuda" CUDA_PATH="$cuda" CUDA_HOME="$cuda"
export LIBRARY_PATH="$cuda/lib:$cuda/lib/stubs" CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
(cd "$root" && cargo build --locked -p clawdesk --features cuda --bin clawdesk)

pack="$root/.gpu"
rm -rf "$pack"
mkdir -p "$pack/lib"
strip -o "$pack/clawdesk" "$CARGO_TARGET_DIR/debug/clawdesk"
# Every shared library it links beyond glibc and the C++ runtime, which the GPU machine has in
# newer versions; run.sh uses a carried one only where the machine lacks it.
ldd "$pack/clawdesk" | awk '/=> \//{print $3}' \
  | grep -vE '/(libc|libm|libdl|librt|libpthread|ld-linux-x86-64|libstdc\+\+|libgcc_s)\.so' \
  | while read -r lib; do cp -L "$lib" "$pack/lib/"; done
gzip -9 "$pack/clawdesk"
du -sh "$pack"
