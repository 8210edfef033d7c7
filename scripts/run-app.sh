#!/usr/bin/env bash
# Builds and opens the ClawDesk window on this machine's display ($DISPLAY).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup.sh"
cd "$root"
cargo run --locked -p clawdesk-app "$@"
