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
# Seeds shared with crates/model/tests/parity.rs.
"$bin" model tiny --out "$work/tiny" --seed 7 >/dev/null
"$bin" model adapter-random --model "$work/tiny" --rank 4 --seed 3 --out "$work/adapter" >/dev/null
"$venv/bin/python" "$root/scripts/hf/goldens.py" --model "$work/tiny" --adapter "$work/adapter" \
  --tool "$root/prompts/tools/computer_use.json" --out "$root/crates/model/tests/goldens"
echo "goldens written to crates/model/tests/goldens"
