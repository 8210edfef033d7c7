#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine: installs what is missing, builds once,
# and runs every test. Each desktop test starts its own sandbox (Xvfb, openbox, a D-Bus
# session and its AT-SPI bus) and stops it afterwards.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup.sh"
source "$root/scripts/setup-tests.sh"
cd "$root"
# Our desktop tests start their own buses; an inherited session bus must not leak in.
unset DBUS_SESSION_BUS_ADDRESS NO_AT_BRIDGE
# Without it candle reads /proc/cpuinfo on every CPU matrix product (see crates/clawdesk/src/main.rs).
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-$(nproc)}"
start=$SECONDS
cargo fmt --all -- --check
# First, a new user's first run: the README's run command in a fresh clone, operated through
# its accessibility tree (tests/first_run.py). It runs before anything else is built, so on a
# fresh machine that command builds the app from nothing, as it would for the user.
# Debian's own Python, where python3-gi is installed (not a python3 earlier on PATH).
/usr/bin/python3 "$root/tests/first_run.py"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked "$@"
# The Debian package, built by Tauri's bundler from what the tests just built, unpacked into an
# empty tree and started (tests/deb_package.rs).
deb=$(bash "$root/scripts/build-deb.sh")
CLAWDESK_DEB="$deb" cargo test --workspace --locked --test deb_package -- --ignored
echo "test.sh: lint, build and tests took $((SECONDS - start)) s" >&2
