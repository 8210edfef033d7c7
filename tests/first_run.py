#!/usr/bin/python3
"""The first run, as a new user has it.

A fresh clone, the README's run command (`bash scripts/run-app.sh`) in a private X display,
the welcome dialog, practice mode picked, and then an agent step, a verdict and a training
update appear in the app's store. Screenshots go to the run's scratch folder, or to
docs/screenshots/ with CLAWDESK_UPDATE_SCREENSHOTS=1 (tests do not write into tracked files
otherwise).

scripts/test.sh runs this before anything else is built, so on a fresh machine the README's
command builds the app from nothing. That is why the harness is Python (PyGObject's AT-SPI
bindings, xdotool, SQLite) and not a Cargo test: a Cargo test would have built most of the app
before the command under test ran. The window is operated the way a person and the agent do:
controls found through the accessibility tree, clicked with the pointer.

Usage: /usr/bin/python3 tests/first_run.py [--build-timeout SECONDS]
"""

import argparse
import os
import select
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APP = "clawdesk-app"
WIDTH, HEIGHT = 1280, 800
# A shorter warm start of the practice base than a person's first run makes (the same as
# PRACTICE_WARM_STEPS in tests/support/lib.rs), so the test waits ~1.5 min for it, not 7.
PRACTICE_WARM_STEPS = 120


class Failure(Exception):
    """What went wrong, said the way the person reading the CI log needs it."""


class Sandbox:
    """A private desktop: Xvfb, a D-Bus session (where the AT-SPI bus is activated) and openbox.

    The same parts, in the same order, as clawdesk_desktop::Sandbox, which the Rust tests use.
    """

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="clawdesk-first-run-"))
        self.processes = []
        self.env = {}
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _spawn(self, args, **kwargs):
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, start_new_session=True, **kwargs
        )
        self.processes.append(process)
        return process

    def _start(self):
        read_end, write_end = os.pipe()
        with open(self.dir / "xserver.log", "wb") as log:
            self._spawn(
                ["Xvfb", "-screen", "0", f"{WIDTH}x{HEIGHT}x24", "-displayfd",
                 str(write_end), "-nolisten", "tcp", "-noreset"],
                stdout=subprocess.DEVNULL, stderr=log, pass_fds=(write_end,),
            )
        os.close(write_end)
        number = read_line(read_end, 15, "Xvfb's display number")
        os.close(read_end)
        for sub in ("run", "config", "data", "cache"):
            (self.dir / sub).mkdir(mode=0o700)
        (self.dir / "Xauthority").write_bytes(b"")
        self.env = {
            "DISPLAY": f":{number}",
            "XDG_RUNTIME_DIR": str(self.dir / "run"),
            "XDG_CONFIG_HOME": str(self.dir / "config"),
            "XDG_DATA_HOME": str(self.dir / "data"),
            "XDG_CACHE_HOME": str(self.dir / "cache"),
            "XAUTHORITY": str(self.dir / "Xauthority"),
            "GSETTINGS_BACKEND": "memory",
            "GTK_A11Y": "atspi",
            "GDK_BACKEND": "x11",
        }
        dbus = self._spawn(
            ["dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address=1"],
            env=self.child_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self.env["DBUS_SESSION_BUS_ADDRESS"] = read_line(
            dbus.stdout.fileno(), 15, "the D-Bus session's address"
        )
        self._spawn(["openbox", "--sm-disable"], env=self.child_env(),
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while not window_manager_running(self.child_env()):
            if time.monotonic() > deadline:
                raise Failure("openbox did not start in the sandbox display")
            time.sleep(0.1)

    def child_env(self, **extra):
        env = {k: v for k, v in os.environ.items()
               if k not in ("NO_AT_BRIDGE", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS")}
        env.update(self.env)
        env.update(extra)
        return env

    def stop(self):
        """Newest first, each process group given two seconds to go on SIGTERM."""
        while self.processes:
            stop_group(self.processes.pop())
        subprocess.run(["rm", "-rf", str(self.dir)], check=False)


def stop_group(process):
    for sig, wait in ((signal.SIGTERM, 2), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    try:
        # Helpers a process started (the AT-SPI bus launcher, WebKit's) share its group.
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def read_line(fd, timeout, what):
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise Failure(f"timed out waiting for {what}")
        chunk = os.read(fd, 1)
        if not chunk:
            raise Failure(f"no {what}: the process exited")
        line += chunk
    return line.decode().strip()


def window_manager_running(env):
    out = subprocess.run(["xprop", "-root", "_NET_SUPPORTING_WM_CHECK"], env=env,
                         capture_output=True, text=True, check=False)
    return out.returncode == 0 and "window id" in out.stdout


class Window:
    """The app's window as AT-SPI and the X display show it."""

    def __init__(self, sandbox, app_process, log):
        # PyGObject's AT-SPI and GDK read the bus and the display when first used.
        os.environ.update(sandbox.env)
        os.environ.pop("NO_AT_BRIDGE", None)
        import gi
        gi.require_version("Atspi", "2.0")
        gi.require_version("Gdk", "3.0")
        from gi.repository import Atspi, Gdk
        self.Atspi, self.Gdk = Atspi, Gdk
        Gdk.init([])
        self.env = sandbox.child_env()
        self.app_process = app_process
        self.log = log

    def check_running(self):
        status = self.app_process.poll()
        if status is not None:
            lines = self.log.read_text(errors="replace").splitlines()[-40:]
            raise Failure(f"the README's run command exited with {status}; its last lines:\n"
                          + "\n".join(lines))

    def app(self):
        desktop = self.Atspi.get_desktop(0)
        for i in range(desktop.get_child_count()):
            child = desktop.get_child_at_index(i)
            if child is not None and child.get_name() == APP:
                return child
        return None

    def controls(self, role):
        """Every showing control of `role` ("push button", "radio button"): (name, node)."""
        app = self.app()
        if app is None:
            return []
        found, stack = [], [app]
        while stack:
            node = stack.pop()
            try:
                states = node.get_state_set()
                if node.get_role_name() == role and states.contains(self.Atspi.StateType.SHOWING):
                    found.append((node.get_name(), node))
                stack.extend(node.get_child_at_index(i) for i in range(node.get_child_count()))
            except Exception:  # A node can vanish while the page re-renders; skip it.
                continue
        return [(name, node) for name, node in found if node is not None]

    def find(self, role, name):
        for found, node in self.controls(role):
            if found == name and self.centre(node) is not None:
                return node
        return None

    def centre(self, node):
        try:
            box = node.get_extents(self.Atspi.CoordType.SCREEN)
        except Exception:
            return None
        x, y = box.x + box.width // 2, box.y + box.height // 2
        if box.width <= 0 or box.height <= 0 or not (0 <= x < WIDTH and 0 <= y < HEIGHT):
            return None
        return x, y

    def wait_for(self, role, name, seconds):
        deadline = time.monotonic() + seconds
        while True:
            self.check_running()
            node = self.find(role, name)
            if node is not None:
                return node
            if time.monotonic() > deadline:
                shown = sorted({n for n, _ in self.controls(role)})
                raise Failure(f"no {role} {name!r} within {seconds} s; showing: {shown}")
            time.sleep(0.5)

    def click(self, role, name, seconds=30):
        node = self.wait_for(role, name, seconds)
        x, y = self.centre(node)
        subprocess.run(["xdotool", "mousemove", "--sync", str(x), str(y), "click", "1"],
                       env=self.env, check=True)

    def enabled(self, role, name):
        node = self.find(role, name)
        return node is not None and node.get_state_set().contains(self.Atspi.StateType.ENABLED)

    def screen(self):
        root = self.Gdk.get_default_root_window()
        return self.Gdk.pixbuf_get_from_window(root, 0, 0, WIDTH, HEIGHT)

    def painted(self):
        """Whether the page is drawn (its tree can come first): most of it not blank white."""
        pixbuf = self.screen()
        pixels, stride, channels = pixbuf.get_pixels(), pixbuf.get_rowstride(), pixbuf.get_n_channels()
        white = total = 0
        for y in range(0, HEIGHT, 8):
            for x in range(0, WIDTH, 8):
                at = y * stride + x * channels
                total += 1
                white += pixels[at:at + 3] == b"\xff\xff\xff"
        return white * 2 < total

    def wait_painted(self, seconds=20):
        deadline = time.monotonic() + seconds
        while not self.painted():
            if time.monotonic() > deadline:
                raise Failure("the window never painted its page")
            time.sleep(0.25)

    def screenshot(self, name):
        if os.environ.get("CLAWDESK_UPDATE_SCREENSHOTS"):
            out = REPO / "docs" / "screenshots"
        else:
            out = Path(tempfile.gettempdir()) / "clawdesk-first-run-screenshots"
        out.mkdir(parents=True, exist_ok=True)
        self.screen().savev(str(out / f"{name}.png"), "png", [], [])
        print(f"first run: saved {out / (name + '.png')}", flush=True)


def store_counts(data_dir):
    """Steps, judge verdicts and the main run's training updates in the app's store."""
    db = data_dir / "clawdesk.sqlite3"
    if not db.exists():
        return 0, 0, 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        def count(sql):
            try:
                return conn.execute(sql).fetchone()[0]
            except sqlite3.OperationalError:  # a table its migrations have not made yet
                return 0
        return (count("SELECT count(*) FROM steps"),
                count("SELECT count(*) FROM verdicts WHERE source = 'judge'"),
                count("SELECT count(*) FROM train_updates WHERE run = 'main'"))


def first_run(build_timeout):
    work = Path(tempfile.mkdtemp(prefix="clawdesk-clone-"))
    sandbox = app = None
    try:
        clone, data, log = work / "clawdesk", work / "data", work / "run-app.log"
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
        sandbox = Sandbox()
        started = time.monotonic()
        with open(log, "wb") as out:
            app = subprocess.Popen(
                ["bash", str(clone / "scripts" / "run-app.sh")], cwd=clone,
                env=sandbox.child_env(
                    CLAWDESK_DATA_DIR=str(data),
                    CLAWDESK_PRACTICE_WARM_STEPS=str(PRACTICE_WARM_STEPS),
                    WEBKIT_DISABLE_COMPOSITING_MODE="1",
                ),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        window = Window(sandbox, app, log)

        # The build, then the welcome dialog; practice mode.
        window.wait_for("push button", "Practise offline", build_timeout)
        print(f"first_run: the welcome dialog after {time.monotonic() - started:.0f} s "
              "(build and start)", file=sys.stderr)
        window.wait_painted()
        window.screenshot("first-run")
        window.click("push button", "Practise offline")
        window.click("push button", "Practise", 60)

        # The practice base warms up (a progress bar); the first action waits for approval.
        window.wait_for("push button", "Approve (Enter)", 900)
        window.screenshot("practice-mode")
        window.click("push button", "Approve (Enter)")
        window.click("radio button", "Autonomous")

        deadline = time.monotonic() + 300
        while True:
            window.check_running()
            steps, judged, updates = store_counts(data)
            if steps and judged and updates:
                break
            if time.monotonic() > deadline:
                raise Failure(f"after 300 s: {steps} steps, {judged} judged, "
                              f"{updates} training updates")
            time.sleep(1)
        print(f"first_run: {steps} steps, {judged} judged, {updates} training updates",
              file=sys.stderr)

        # Stop ends the session (and its practice display) before the window goes: Start is
        # offered again.
        window.click("push button", "Stop")
        deadline = time.monotonic() + 60
        while not window.enabled("push button", "Start"):
            window.check_running()
            if time.monotonic() > deadline:
                raise Failure("the session never ended after Stop")
            time.sleep(0.25)
        print(f"first_run: passed in {time.monotonic() - started:.0f} s", file=sys.stderr)
    finally:
        if app is not None:
            stop_group(app)
        if sandbox is not None:
            sandbox.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-timeout", type=int, default=3600,
                        help="seconds the README's command may take to build and show the window")
    args = parser.parse_args()
    try:
        first_run(args.build_timeout)
    except (Failure, subprocess.CalledProcessError) as e:
        print(f"first_run: FAILED: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
