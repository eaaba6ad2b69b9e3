#!/usr/bin/env bash
# NetworkPolicy benchmark against the kernel, in network namespaces of its own (nothing touches
# the host's ruleset):
# - the time to apply one policy with 1000 present (one whole-table `nft -f -` transaction);
# - first-packet latency: TCP connects from a client namespace through a router namespace (whose
#   forward hook holds the table, as a node's does) to a server namespace, with no table and
#   with 1000 policies plus the one that lets the client in; the ratio of their p99 (target
#   <= 1.1).
# Debug build by default (PROFILE=release for release). Run as root.
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
C="$NS-c"; R="$NS-r"; S="$NS-s"
cleanup() { for n in "$NS" "$C" "$R" "$S"; do ip netns del "$n" 2>/dev/null || true; done; }
trap cleanup EXIT
ip netns add "$NS"
echo "== nanokube netpol sync layer ($PROFILE), nft $(nft --version | awk '{print $2}'), $(nproc) cores"
nsenter --net="/run/netns/$NS" "target/$PROFILE/examples/netpol_bench" "$POLICIES" "$PODS" "$ROUNDS"

CONNECTS=${CONNECTS:-3000}
B="target/$PROFILE/examples/netpol_bench"
for n in "$C" "$R" "$S"; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip link add nkb-c type veth peer name nkb-rc
ip link set nkb-c netns "$C"; ip link set nkb-rc netns "$R"
ip link add nkb-s type veth peer name nkb-rs
ip link set nkb-s netns "$S"; ip link set nkb-rs netns "$R"
ip -n "$C" addr add 10.42.0.2/24 dev nkb-c; ip -n "$C" link set nkb-c up
ip -n "$S" addr add 10.42.1.2/24 dev nkb-s; ip -n "$S" link set nkb-s up
ip -n "$R" addr add 10.42.0.1/24 dev nkb-rc; ip -n "$R" link set nkb-rc up
ip -n "$R" addr add 10.42.1.1/24 dev nkb-rs; ip -n "$R" link set nkb-rs up
ip -n "$C" route add default via 10.42.0.1
ip -n "$S" route add default via 10.42.1.1
ip netns exec "$R" sysctl -qw net.ipv4.ip_forward=1
ip netns exec "$S" "$B" serve 10.42.1.2:8080 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; cleanup' EXIT
sleep 0.3
latency() { # <policies>: prints the connect line
    ip netns exec "$R" "$B" load "$1" 10.42.1.2 10.42.0.2 8080 >/dev/null
    ip netns exec "$C" "$B" connect 10.42.1.2:8080 "$CONNECTS" | grep RESULT
}
# The table is live: with the server isolated and no policy naming the client, nothing passes.
ip netns exec "$R" "$B" load "$POLICIES" 10.42.1.2 10.42.0.99 8080 >/dev/null
if ip netns exec "$C" "$B" connect 10.42.1.2:8080 1 >/dev/null 2>&1; then
    echo "bench-netpol: the router's table let an unnamed client through" >&2
    exit 1
fi
echo "== first-packet latency: $CONNECTS connects client -> router -> server"
latency 0 >/dev/null   # warm-up
NONE=$(latency 0)
MANY=$(latency "$POLICIES")
echo "no policies:        $NONE"
echo "$POLICIES policies:      $MANY"
p99() { sed -n 's/.*p99_us=\([0-9.]*\).*/\1/p' <<<"$1"; }
awk -v a="$(p99 "$NONE")" -v b="$(p99 "$MANY")" \
    'BEGIN { printf "first-packet p99 with %s policies / none = %.2f (target <= 1.1)\n", '"$POLICIES"', b / a }'
