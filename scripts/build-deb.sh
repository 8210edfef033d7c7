#!/usr/bin/env bash
# Builds ClawDesk's Debian package with Tauri's bundler (`tauri bundle`, over binaries cargo
# built): the window (clawdesk-app), the practice window beside it (clawdesk-practice), the
# command line (clawdesk), a desktop-menu entry, and the Debian packages they need. `--release` builds optimised binaries
# (long on a small machine); without it the dev build the tests use is packed. Prints the
# .deb's path.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup.sh" >&2
cd "$root"
profile=debug
tauri_flags=(--debug)
if [ "${1:-}" = "--release" ]; then
  profile=release
  tauri_flags=()
fi
# The programs: for a release, optimised; otherwise the dev build, made the way the tests make
# it (the same features, so nothing is built twice after `cargo test`).
if [ "$profile" = release ]; then
  cargo build --release --workspace --bins --locked >&2
else
  cargo test --workspace --locked --no-run >&2
fi
practice="$CARGO_TARGET_DIR/$profile/clawdesk-practice"
cli="$CARGO_TARGET_DIR/$profile/clawdesk"
# The practice window and the command line are programs of their own; the bundler copies them
# next to the app.
config=$(printf '{"bundle":{"active":true,"targets":["deb"],"linux":{"deb":{"files":{"/usr/bin/clawdesk-practice":"%s","/usr/bin/clawdesk":"%s"}}}}}' "$practice" "$cli")
"$root/ui/node_modules/.bin/tauri" bundle "${tauri_flags[@]}" --bundles deb \
  --config "$root/src-tauri/tauri.deb.json" --config "$config" >&2
ls -t "$CARGO_TARGET_DIR/$profile/bundle/deb/"*.deb | head -n 1
