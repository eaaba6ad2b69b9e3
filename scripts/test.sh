#!/usr/bin/env bash
# Runs every test: installs system packages, builds the binary and the test image, runs the unit
# and root integration tests, then the cgroup v2 tests inside a VM. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "test.sh: run as root (sudo ./scripts/test.sh)" >&2; exit 1; fi

./scripts/deps.sh
. scripts/env.sh
if ! command -v kubectl >/dev/null; then
  echo "test.sh: the API tests drive the real kubectl, and none is on PATH" >&2
  exit 1
fi
# Lints are enforced, not hoped for: the crate's [lints] (undocumented_unsafe_blocks, ...) and
# clippy's defaults fail the run, as does unformatted code.
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo build --locked --all-targets
./rootfs/build.sh
# A hung test must fail the run, not eat CI's time budget.
timeout --kill-after=30 40m cargo test --locked --all-targets --no-fail-fast 2>&1 | tee target/test.log
./scripts/vm-test.sh
