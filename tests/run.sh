#!/usr/bin/env bash
# The test command (README "Set up, run, test"): installs what the suites need on a fresh
# machine (the wasm32-wasip2 target; Chromium, Node.js and the pinned node modules through
# tests/setup.sh), then runs every test of the workspace: unit, plugin, end-to-end, browser.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2
bash tests/setup.sh
cargo test --workspace "$@"
