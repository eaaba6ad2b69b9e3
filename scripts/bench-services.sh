#!/usr/bin/env bash
# Service proxy benchmark, run as root; nothing touches the host's ruleset or addresses.
# 1. The sync layer alone against the kernel, inside a network namespace of its own: cold sync of
#    10k services x 10 endpoints, and the time to program one new service with 10k present,
#    compared with kube-proxy's published nftables-mode figure (~141 ms to program a service
#    change at 10k services; no kube-proxy runs here, the figure is the anchor the issue names).
# 2. First-packet latency: connect() p99 through one cluster IP with 100 and with 10k services
#    present, for both backends, from a client namespace to a listener in a second namespace
#    joined by a veth pair (no route leaves the two).
set -euo pipefail
cd "$(dirname "$0")/.."
SERVICES=${SERVICES:-10000}
ENDPOINTS=${ENDPOINTS:-10}
ROUNDS=${ROUNDS:-5}
CONNECTIONS=${CONNECTIONS:-2000}
KUBE_PROXY_MS=141

cargo build --release --example proxy_bench >&2
BENCH=target/release/examples/proxy_bench
NS="nk-bench-svc-$$"
SRV="nk-bench-srv-$$"
ip netns add "$NS"
ip netns add "$SRV"
trap 'ip netns del "$NS"; ip netns del "$SRV"' EXIT

echo "== nanokube proxy sync layer, nft $(nft --version | awk '{print $2}'), $(nproc) cores"
OUT=$(nsenter --net="/run/netns/$NS" "$BENCH" "$SERVICES" "$ENDPOINTS" "$ROUNDS")
echo "$OUT" | grep -v '^RESULT'
ADD=$(echo "$OUT" | sed -n 's/^RESULT add_ms=\([0-9.]*\) .*/\1/p')
COLD=$(echo "$OUT" | sed -n 's/.*cold_ms=\([0-9.]*\)$/\1/p')
awk -v a="$ADD" -v k="$KUBE_PROXY_MS" -v c="$COLD" 'BEGIN {
    printf "one new service: %.1f ms vs kube-proxy nftables ~%d ms: %.2fx (target <= 50 ms)\n", a, k, a / k
    printf "cold sync: %.0f ms (target <= 2000 ms)\n", c
}'

echo "== first-packet latency through a cluster IP, 100 vs 10k services"
ip netns exec "$NS" nft delete table ip nanokube-proxy 2>/dev/null || true
ip link add nk-bench-c netns "$NS" type veth peer name nk-bench-s netns "$SRV"
ip -n "$NS" addr add 10.42.255.1/24 dev nk-bench-c
ip -n "$SRV" addr add 10.42.255.2/24 dev nk-bench-s
for n in "$NS" "$SRV"; do ip -n "$n" link set lo up; done
ip -n "$NS" link set nk-bench-c up
ip -n "$SRV" link set nk-bench-s up
# The cluster IP must route somewhere before the NAT rewrites it; the rest never leaves.
ip -n "$NS" route add 10.43.0.0/16 dev nk-bench-c
for mode in nftables iptables; do
    OUT=$(nsenter --net="/run/netns/$NS" "$BENCH" latency "$mode" "/run/netns/$SRV" "$CONNECTIONS")
    echo "$OUT" | grep -v '^RESULT'
    echo "$OUT" | sed -n "s/^RESULT ${mode}_p99_ratio=\(.*\)/$mode: p99 10k\/100 = \1x/p" |
        { read -r line; if [ "$mode" = nftables ]; then echo "$line (target <= 1.1)"; else echo "$line (for contrast)"; fi; }
done
