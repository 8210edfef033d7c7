#!/usr/bin/env bash
# Builds and opens the ClawDesk window on this machine's display ($DISPLAY).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup.sh"
cd "$root"
# The first build compiles ClawDesk and its dependencies (Tauri, WebKitGTK's bindings, candle):
# 23 minutes measured on 2 cores, roughly proportionally less on more. Later runs take seconds.
if [ ! -x "$CARGO_TARGET_DIR/debug/clawdesk-app" ]; then
  cores="$(nproc)"
  echo "run-app: first build: roughly $(( (46 + cores - 1) / cores )) minutes on this machine's $cores cores; later starts take seconds" >&2
fi
# The window and the practice window it opens in practice mode (found beside it).
cargo build --locked -p clawdesk-app -p clawdesk-practice
exec "$CARGO_TARGET_DIR/debug/clawdesk-app" "$@"
