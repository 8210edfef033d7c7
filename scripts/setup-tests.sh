#!/usr/bin/env bash
# Installs what the tests need beyond what running ClawDesk needs (scripts/setup.sh, sourced
# first); safe to run again. Sourced by test.sh.
set -euo pipefail

# The real GTK apps the tests operate and the X tools they check them with; a Secret Service
# (GNOME Keyring, secret-tool) for the judge's API-key test; Python with venv for the library
# clients the tests drive ClawDesk's outputs with, and PyGObject's AT-SPI and GDK bindings for
# the first-run test (tests/first_run.py); WebKitGTK's WebDriver (webkit2gtk-driver) for the UI
# tests, behind tauri-driver.
clawdesk_install x11-utils xdotool zenity gtk-3-examples mousepad gnome-calculator xterm \
  gnome-keyring libsecret-tools \
  libglib2.0-bin python3 python3-venv python3-gi gir1.2-atspi-2.0 gir1.2-gtk-3.0 \
  webkit2gtk-driver

# tauri-driver, the WebDriver front the UI tests drive the app through (src-tauri/tests/ui.rs).
CLAWDESK_TOOLS="${CLAWDESK_TOOLS:-$HOME/.cache/clawdesk/tools}"
if [ ! -x "$CLAWDESK_TOOLS/bin/tauri-driver" ]; then
  echo "setup: installing tauri-driver into $CLAWDESK_TOOLS" >&2
  CARGO_TARGET_DIR="$CLAWDESK_TOOLS/target" cargo install --quiet --locked tauri-driver@2.1.0 \
    --root "$CLAWDESK_TOOLS"
  rm -rf "$CLAWDESK_TOOLS/target"
fi
export CLAWDESK_TAURI_DRIVER="$CLAWDESK_TOOLS/bin/tauri-driver"

# The libraries that read what ClawDesk writes, in a venv of their own: the official OpenAI
# client (tests/python/openai_client.py), and Hugging Face datasets, pyarrow and TRL's data
# utilities for the exports (tests/python/export_formats.py), and ByteDance's ui-tars parser that
# `agent parse` is compared with (tests/python/ui_tars_parse.py). TRL comes without its
# dependencies: its data utilities need only transformers, and its trainers' torch is not used.
CLAWDESK_PY="${CLAWDESK_PY:-$HOME/.cache/clawdesk/py}"
if ! "$CLAWDESK_PY/bin/python" -c "import openai, datasets, pyarrow, pandas, transformers, trl.data_utils, ui_tars.action_parser" 2>/dev/null; then
  echo "setup: installing the Python clients into $CLAWDESK_PY" >&2
  python3 -m venv "$CLAWDESK_PY"
  "$CLAWDESK_PY/bin/pip" install --quiet --disable-pip-version-check "openai==3.57.0" \
    "datasets==5.2.0" "pyarrow==26.0.1" "pandas==3.1.1" "pillow==13.0.0" "transformers==5.25.0" \
    "jinja2" "ui-tars==0.5.1"
  "$CLAWDESK_PY/bin/pip" install --quiet --disable-pip-version-check --no-deps "trl==1.16.0"
fi
export CLAWDESK_PYTHON="$CLAWDESK_PY/bin/python"
