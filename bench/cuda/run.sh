#!/usr/bin/env bash
# The CUDA figures of bench/RESULTS.md, on a GPU machine with the NVIDIA driver, CUDA 13's
# libraries and Python with torch + transformers + peft (the baseline), from the .gpu/ that
# bench/cuda/pack.sh made. Reports go to $OUT (default .gpu/out).
#
#   bench/cuda/run.sh [smoke] [warm] [2b]      (default: smoke 2b; run in the order given)
#     smoke  the tiny shape on CUDA, no baseline: a broken CUDA path fails in seconds
#     warm   the practice base's warm start on the GPU ($WARM_STEPS updates, seeds $WARM_SEEDS,
#            extra `gym base` flags $WARM_FLAGS), packed as warm-bases.tgz for a CPU's cache
#     2b     the Qwen3-VL-2B shape in bf16 beside PyTorch + transformers + PEFT
#     variants  several warm starts at once, one per ';'-separated flag set in $WARM_VARIANTS
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
gpu="$root/.gpu"
out="${OUT:-$gpu/out}"
mkdir -p "$out"
sections="${*:-smoke 2b}"

bin="$(mktemp -d)"
gunzip -c "$gpu/clawdesk.gz" >"$bin/clawdesk" && chmod +x "$bin/clawdesk"
# Carried libraries only where the machine has none of that name (its own are newer).
libs="$bin/lib"
mkdir -p "$libs"
for f in "$gpu"/lib/*; do
  n="$(basename "$f")"
  ldconfig -p | grep -qE "^[[:space:]]+${n//+/\\+} " || ln -s "$f" "$libs/$n"
done
# cuBLAS, cuRAND, NVRTC and cudart: wherever the machine keeps them.
for d in $(find /usr/local /opt /usr/lib -name 'libcublas.so.*' -o -name 'libcurand.so.*' \
  -o -name 'libnvrtc.so.*' -o -name 'libcudart.so.*' 2>/dev/null | xargs -r -n1 dirname | sort -u); do
  libs="$libs:$d"
done
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# The baseline script is found at the path the binary was built from.
built="/work/main"
[ -e "$built/bench/hf_model_bench.py" ] || { mkdir -p "$(dirname "$built")"; ln -sfn "$root" "$built"; }
python="${PYTHON:-python3}"

{
  echo "carried libraries used: $(ls "$bin/lib" | tr '\n' ' ')"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  echo "cpus: $(nproc)"
  "$python" -c 'import torch, transformers, peft; print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)'
} 2>&1 | tee "$out/device.txt"

run() {
  local name="$1"
  shift
  echo "== $name: $*"
  local start=$SECONDS
  RUST_LOG=info,enigo=error "$bin/clawdesk" "$@" >"$out/$name.out" 2>"$out/$name.log"
  echo "exit $? after $((SECONDS - start)) s"
  cat "$out/$name.out"
  grep -iE 'error|panic' "$out/$name.log" | tail -5
}

for section in $sections; do
  case "$section" in
    smoke)
      # A broken CUDA path shows up in seconds, not after the 2B model loads.
      run tiny bench model --device cuda --shape tiny --no-baseline --rounds 1 --iterations 3
      ;;
    2b)
      # The Qwen3-VL-2B shape in bf16, beside PyTorch + transformers + PEFT on the same weights.
      run 2b bench model --device cuda --shape 2b --python "$python" --rounds 2 --iterations 5 \
        --prompt-tokens 512 --decode-tokens 64 --batch 4 --response-tokens 128 --rank 16
      ;;
    warm)
      cache="$out/warm-cache"
      for seed in ${WARM_SEEDS:-1}; do
        run "warm-$seed" gym base --device cuda --seed "$seed" --warm-steps "${WARM_STEPS:-100}" \
          ${WARM_FLAGS:-} --cache "$cache"
        grep -E 'warm start' "$out/warm-$seed.log" | tail -3
      done
      cat "$cache"/practice-base-*/warm_start.json 2>/dev/null
      tar -C "$cache" -czf "$out/warm-bases.tgz" . && rm -rf "$cache"
      ;;
    variants)
      # Several warm starts at once (the tiny model leaves the GPU mostly idle): one per
      # entry of $WARM_VARIANTS (flag sets separated by ';'), $WARM_STEPS updates each, each
      # cut off at $VARIANT_TIMEOUT seconds; their reports are printed and packed
      # ($VARIANT_EVAL set: each base is also scored per task kind on both splits).
      i=0
      IFS=';' read -ra variants <<<"${WARM_VARIANTS:---demo-accuracy 1.0}"
      for flags in "${variants[@]}"; do
        i=$((i + 1))
        (
          cache="$out/variant-$i"
          # shellcheck disable=SC2086
          timeout "${VARIANT_TIMEOUT:-500}" "$bin/clawdesk" gym base --device cuda --warm-steps "${WARM_STEPS:-100}" \
            $flags --cache "$cache" >"$out/variant-$i.out" 2>"$out/variant-$i.log"
          echo "variant $i ($flags): exit $?"
        ) &
      done
      wait
      for j in $(seq 1 "$i"); do
        echo "== variant $j"
        cat "$out/variant-$j"/practice-base-*/warm_start.json 2>/dev/null || tail -3 "$out/variant-$j.log"
        echo
        # With $VARIANT_EVAL set: greedy success per task kind, held-out and training layouts.
        for base in "$out/variant-$j"/practice-base-*/; do
          [ -n "${VARIANT_EVAL:-}" ] && [ -d "$base" ] || continue
          for kind in click type menu; do
            for split in "" --train-split; do
              printf '%s %s: ' "$kind" "${split:-held-out}"
              "$bin/clawdesk" gym eval --model "$base" --kind "$kind" --tasks 60 $split 2>/dev/null | tail -1
            done
          done
        done
      done
      tar -C "$out" -czf "$out/variant-bases.tgz" $(cd "$out" && ls -d variant-*/ 2>/dev/null) && rm -rf "$out"/variant-*/
      ;;
    *) echo "unknown section $section" ;;
  esac
done
