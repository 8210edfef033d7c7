#!/usr/bin/env python3
"""The observe path as OSWorld's desktop server does it, timed, for `clawdesk bench observe`.

OSWorld (desktop_env/server/main.py) takes screenshots with pyautogui and serialises the
accessibility tree with pyatspi, node by node (role, name, states, text, extents); its agents
then linearise that tree to one line per node. This script does the same work on the app the
benchmark started and prints the timings as JSON on stdout. Run it with a Python that has
pyautogui and Debian's pyatspi (bench/setup-baseline.sh makes one).
"""

import argparse
import io
import json
import sys
import time

import pyatspi
import pyautogui
import pyscreeze

# OSWorld's Ubuntu image has gnome-screenshot, and with it (and Pillow >= 9.2) pyscreeze takes
# screenshots with Pillow's in-memory XCB grab; gnome-screenshot itself is only checked for,
# never run. Debian's minimal sandbox lacks it, so set the flag it would have set, and
# pyautogui.screenshot() runs the same code as on OSWorld's VM.
pyscreeze.GNOMESCREENSHOT_EXISTS = True


def find_app(name):
    desktop = pyatspi.Registry.getDesktop(0)
    for app in desktop:
        if app is not None and (app.name or "").lower() == name.lower():
            return app
    raise SystemExit(f"app {name!r} is not on the accessibility bus")


def node_line(node, depth, lines):
    """OSWorld's per-node facts: tag (role), name, text, states, position and size."""
    try:
        role = node.getRoleName()
        name = node.name or ""
        states = node.getState().getStates()
        text = ""
        try:
            t = node.queryText()
            text = t.getText(0, min(t.characterCount, 4096))
        except NotImplementedError:
            pass
        pos = size = None
        try:
            c = node.queryComponent()
            pos = c.getPosition(pyatspi.XY_SCREEN)
            size = c.getSize()
        except NotImplementedError:
            pass
        visible = pyatspi.STATE_SHOWING in states and pyatspi.STATE_VISIBLE in states
        if visible and size is not None and size[0] > 0 and size[1] > 0:
            lines.append(f"{role}\t{name}\t{text}\t{pos}\t{size}")
        for child in node:
            if child is not None:
                node_line(child, depth + 1, lines)
        return 1
    except Exception:  # a node destroyed mid-walk, as OSWorld tolerates
        return 0


def count(node):
    n = 1
    for child in node:
        if child is not None:
            n += count(child)
    return n


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--app", required=True)
    parser.add_argument("--iterations", type=int, default=30)
    args = parser.parse_args()
    app = find_app(args.app)
    out = {"screenshot": [], "tree": [], "encode": [], "step": [], "nodes": count(app)}
    for i in range(args.iterations + 3):
        t0 = time.perf_counter()
        image = pyautogui.screenshot()
        t1 = time.perf_counter()
        lines = []
        node_line(app, 0, lines)
        "\n".join(lines)
        t2 = time.perf_counter()
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        t3 = time.perf_counter()
        if i >= 3:
            out["screenshot"].append((t1 - t0) * 1e3)
            out["tree"].append((t2 - t1) * 1e3)
            out["step"].append((t2 - t0) * 1e3)
            out["encode"].append((t3 - t2) * 1e3)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
