#!/usr/bin/env bash
# Installs what ClawDesk needs on a Debian machine and builds the UI; safe to run again.
# Sourced by run-app.sh and test.sh.
set -euo pipefail

# What building and running ClawDesk needs, nothing more (scripts/setup-tests.sh adds what
# the tests need). Build: Tauri's WebKitGTK. (The optional `xcap` capture backend needs
# libpipewire-0.3-dev, libgbm-dev and libclang-dev besides; the default build does not use it.)
# Run: the agent's sandbox display (Xvfb, or Xephyr to watch it), a window manager, and D-Bus
# with the AT-SPI bus the accessibility tree is read through.
CLAWDESK_PACKAGES=(
  pkg-config build-essential libwebkit2gtk-4.1-dev libegl-dev libwayland-dev libxcb1-dev
  xvfb xserver-xephyr xauth openbox dbus at-spi2-core
)

# Installs the Debian packages named in the arguments that are missing.
clawdesk_install() {
  local missing=() p sudo_cmd=""
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "setup: installing ${missing[*]}" >&2
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y --no-install-recommends "${missing[@]}"
}
clawdesk_install "${CLAWDESK_PACKAGES[@]}"

command -v cargo >/dev/null || { echo "setup: Rust is missing; install it from https://rustup.rs" >&2; exit 1; }
command -v npm >/dev/null || { echo "setup: Node.js 20+ with npm is missing" >&2; exit 1; }

# One target directory that outlives checkouts, so a second run builds nothing again.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/clawdesk/target}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The window embeds ui/dist at compile time, so it is built first.
(
  cd "$root/ui"
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund
  fi
  npm run build --silent
)
