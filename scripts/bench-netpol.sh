#!/usr/bin/env bash
# NetworkPolicy benchmark, the sync layer alone against the kernel, inside a network namespace of
# its own (nothing touches the host's ruleset): the time to apply one policy with 1000 present
# (one whole-table `nft -f -` transaction). Debug build by default (PROFILE=release for release).
# First-packet latency with 1000 policies vs none is NOT measured yet. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
POLICIES=${POLICIES:-1000}
PODS=${PODS:-200}
ROUNDS=${ROUNDS:-5}
PROFILE=${PROFILE:-debug}

if [ "$PROFILE" = release ]; then
    cargo build --release --example netpol_bench >&2
else
    cargo build --example netpol_bench >&2
fi
NS="nk-bench-netpol-$$"
ip netns add "$NS"
trap 'ip netns del "$NS"' EXIT
echo "== nanokube netpol sync layer ($PROFILE), nft $(nft --version | awk '{print $2}'), $(nproc) cores"
nsenter --net="/run/netns/$NS" "target/$PROFILE/examples/netpol_bench" "$POLICIES" "$PODS" "$ROUNDS"
