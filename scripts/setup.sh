#!/usr/bin/env bash
# Installs what ClawDesk needs on a Debian machine and builds the UI; safe to run again.
# Sourced by run-app.sh and test.sh.
set -euo pipefail

# Build: Tauri's WebKitGTK, xcap's PipeWire/EGL/Wayland bindings (bindgen needs libclang).
# Run and test: an X server, a window manager, D-Bus with the AT-SPI bus, xdotool, and the
# real GTK apps the tests operate, and a Secret Service (GNOME Keyring, secret-tool) for the
# judge's API-key test. Python with venv for the OpenAI client the API tests drive the server with,
# and PyGObject's AT-SPI and GDK bindings for the first-run test (tests/first_run.py).
# WebKitGTK's WebDriver (webkit2gtk-driver) for the UI tests, behind tauri-driver.
CLAWDESK_PACKAGES=(
  pkg-config build-essential libwebkit2gtk-4.1-dev libpipewire-0.3-dev libclang-dev libgbm-dev
  libegl-dev libwayland-dev libxcb1-dev
  xvfb xserver-xephyr xauth openbox dbus at-spi2-core x11-utils xdotool
  zenity gtk-3-examples mousepad gnome-calculator xterm
  gnome-keyring libsecret-tools
  libglib2.0-bin python3 python3-venv python3-gi gir1.2-atspi-2.0 gir1.2-gtk-3.0
  webkit2gtk-driver
)

missing=()
for p in "${CLAWDESK_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y --no-install-recommends "${missing[@]}"
fi

command -v cargo >/dev/null || { echo "setup: Rust is missing; install it from https://rustup.rs" >&2; exit 1; }
command -v npm >/dev/null || { echo "setup: Node.js 20+ with npm is missing" >&2; exit 1; }

# One target directory that outlives checkouts, so a second run builds nothing again.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/clawdesk/target}"

# tauri-driver, the WebDriver front the UI tests drive the app through (src-tauri/tests/ui.rs).
CLAWDESK_TOOLS="${CLAWDESK_TOOLS:-$HOME/.cache/clawdesk/tools}"
if [ ! -x "$CLAWDESK_TOOLS/bin/tauri-driver" ]; then
  echo "setup: installing tauri-driver into $CLAWDESK_TOOLS" >&2
  CARGO_TARGET_DIR="$CLAWDESK_TOOLS/target" cargo install --quiet --locked tauri-driver@2.1.0 \
    --root "$CLAWDESK_TOOLS"
  rm -rf "$CLAWDESK_TOOLS/target"
fi
export CLAWDESK_TAURI_DRIVER="$CLAWDESK_TOOLS/bin/tauri-driver"

# The official OpenAI Python client, in a venv of its own (tests/python/openai_client.py).
CLAWDESK_PY="${CLAWDESK_PY:-$HOME/.cache/clawdesk/py}"
if ! "$CLAWDESK_PY/bin/python" -c "import openai" 2>/dev/null; then
  echo "setup: installing the openai Python client into $CLAWDESK_PY" >&2
  python3 -m venv "$CLAWDESK_PY"
  "$CLAWDESK_PY/bin/pip" install --quiet --disable-pip-version-check "openai==3.57.0"
fi
export CLAWDESK_PYTHON="$CLAWDESK_PY/bin/python"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The window embeds ui/dist at compile time, so it is built first.
(
  cd "$root/ui"
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund
  fi
  npm run build --silent
)
