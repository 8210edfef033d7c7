#!/usr/bin/env bash
# Regenerates the HF parity goldens in crates/model/tests/goldens from a tiny model and adapter
# that our own `clawdesk model` commands write (the Rust tests rebuild the same files from the
# same seeds). Needs the network once, for PyPI.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${CLAWDESK_HF_VENV:-$HOME/.cache/clawdesk/hf-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet torch torchvision transformers peft safetensors pillow numpy
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/clawdesk/target}"
cargo build --quiet -p clawdesk --bin clawdesk
bin="$CARGO_TARGET_DIR/debug/clawdesk"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Seeds shared with crates/model/tests/parity.rs. One set per family: Qwen3-VL's in goldens/,
# Qwen2.5-VL's in goldens/qwen2_5_vl/, and a second Qwen2.5-VL shape (other layer and head
# counts, window and full-attention blocks; its overlay.json) in goldens/qwen2_5_vl_hidden/.
# `make-goldens.sh qwen2.5-vl` remakes only that one.
only="${1:-all}"
for set in qwen3-vl qwen2.5-vl qwen2.5-vl-hidden; do
  [ "$only" = all ] || [ "$only" = "$set" ] || continue
  overlay=()
  case "$set" in
    qwen3-vl) arch=qwen3-vl; dest="$root/crates/model/tests/goldens" ;;
    qwen2.5-vl) arch=qwen2.5-vl; dest="$root/crates/model/tests/goldens/qwen2_5_vl" ;;
    qwen2.5-vl-hidden)
      arch=qwen2.5-vl; dest="$root/crates/model/tests/goldens/qwen2_5_vl_hidden"
      overlay=(--config "$dest/overlay.json") ;;
  esac
  "$bin" model tiny --arch "$arch" "${overlay[@]}" --out "$work/$arch" --seed 7 >/dev/null
  "$bin" model adapter-random --model "$work/$arch" --rank 4 --seed 3 --out "$work/$arch-adapter" >/dev/null
  "$venv/bin/python" "$root/scripts/hf/goldens.py" --model "$work/$arch" --adapter "$work/$arch-adapter" \
    --tool "$root/prompts/tools/computer_use.json" --out "$dest"
  echo "$set goldens written to ${dest#"$root"/}"
done
