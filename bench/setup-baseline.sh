#!/usr/bin/env bash
# Makes the Python that `clawdesk bench observe` runs OSWorld's stack with: Debian's python3
# (the only one with pyatspi) in a venv that sees the system packages, plus pyautogui from PyPI.
set -euo pipefail
venv="${HOME}/.cache/clawdesk/osworld-venv"
if ! dpkg -s python3-pyatspi python3-venv python3-tk python3-dev >/dev/null 2>&1; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-pyatspi python3-venv python3-tk python3-dev
fi
if [ ! -x "$venv/bin/python" ]; then
  /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
"$venv/bin/python" -m pip install --quiet 'pyautogui==0.9.54' 'pillow>=10'
# pyautogui needs a display to import, so check what is installed without importing it.
"$venv/bin/python" -c 'import importlib.metadata as m, pyatspi; print("baseline ready: pyautogui", m.version("pyautogui"))'
