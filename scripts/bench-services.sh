#!/usr/bin/env bash
# Service proxy benchmark, the sync layer alone against the kernel, inside a network namespace
# of its own (nothing touches the host's ruleset): cold sync of 10k services x 10 endpoints, and
# the time to program one new service with 10k present, compared with kube-proxy's published
# nftables-mode figure (~141 ms to program a service change at 10k services; no kube-proxy
# runs here, the figure is the anchor the issue names). Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
SERVICES=${SERVICES:-10000}
ENDPOINTS=${ENDPOINTS:-10}
ROUNDS=${ROUNDS:-5}
KUBE_PROXY_MS=141

cargo build --release --example proxy_bench >&2
NS="nk-bench-svc-$$"
ip netns add "$NS"
trap 'ip netns del "$NS"' EXIT

echo "== nanokube proxy sync layer, nft $(nft --version | awk '{print $2}'), $(nproc) cores"
OUT=$(nsenter --net="/run/netns/$NS" target/release/examples/proxy_bench "$SERVICES" "$ENDPOINTS" "$ROUNDS")
echo "$OUT" | grep -v '^RESULT'
ADD=$(echo "$OUT" | sed -n 's/^RESULT add_ms=\([0-9.]*\) .*/\1/p')
COLD=$(echo "$OUT" | sed -n 's/.*cold_ms=\([0-9.]*\)$/\1/p')
awk -v a="$ADD" -v k="$KUBE_PROXY_MS" -v c="$COLD" 'BEGIN {
    printf "one new service: %.1f ms vs kube-proxy nftables ~%d ms: %.2fx (target <= 50 ms)\n", a, k, a / k
    printf "cold sync: %.0f ms (target <= 2000 ms)\n", c
}'
