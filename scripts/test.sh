#!/usr/bin/env bash
# The whole test suite: unit and integration tests of every crate (real `warren` processes
# driven by real clients), then the cross-client interop checks (pika, Java client) and the
# management UI's browser test (chromium + playwright-core; screenshot in target/).
# Network-namespace tests need root and skip with a printed reason without it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins
cargo test --workspace -- --test-threads="${WARREN_TEST_THREADS:-2}"
tests/interop/run.sh "${CARGO_TARGET_DIR:-target}/debug/warren"
tests/ui/run.sh "${CARGO_TARGET_DIR:-target}/debug/warren"
echo "all tests passed"
