#!/usr/bin/env bash
# Builds and opens the ClawDesk window on this machine's display ($DISPLAY).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup.sh"
cd "$root"
# The window and the practice window it opens in practice mode (found beside it).
cargo build --locked -p clawdesk-app -p clawdesk-practice
exec "$CARGO_TARGET_DIR/debug/clawdesk-app" "$@"
