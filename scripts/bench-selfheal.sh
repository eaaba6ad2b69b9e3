#!/usr/bin/env bash
# Self-healing benchmark: a one-node cluster (`nanokube server` with its agent) in a network
# namespace of its own, a Deployment of one busybox `sleep` replica without probes, and TRIALS
# rounds of (a) `kill -9` of the container's main process, timed until the pod is Ready again
# with restartCount + 1, and (b) delete of the pod, timed until its replacement is Ready.
# Prints p50/p99 of each and the ratios to issue 11's targets (p99 <= 2 s for a container
# restart, <= 3 s for a replacement pod). Everything (server, pods, mounts, the namespace, the
# temporary directory) is removed at exit. Run as root.
#
# usage: sudo scripts/bench-selfheal.sh   (TRIALS=50; PROFILE=debug uses a debug build)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
TRIALS=${TRIALS:-50}
PROFILE=${PROFILE:-release}
if [ "$(id -u)" != 0 ]; then echo "bench-selfheal.sh: run as root" >&2; exit 1; fi

case "$PROFILE" in
release) cargo build --release --bin nanokube --example selfheal_bench >&2 ;;
debug) cargo build --bin nanokube --example selfheal_bench >&2 ;;
*) echo "PROFILE is release or debug" >&2; exit 2 ;;
esac
./rootfs/build.sh >&2
BIN=$PWD/target/$PROFILE/nanokube
BENCH=$PWD/target/$PROFILE/examples/selfheal_bench

NS="nk-bench-heal-$$"
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/nk-bench-heal.XXXXXX")
DATA="$WORK/data"
RUNTIME="$WORK/run"
run() { nsenter --net="/run/netns/$NS" "$@"; }
SERVER=
# The agent makes the kubepods cgroups (kept by `killall`, as they are the node's); removed at
# exit only if this run made them, and only what is empty.
KUBEPODS_BEFORE=$( (ls -d /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods 2>/dev/null || true) | wc -l)
cleanup() {
    set +e
    if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; fi
    [ -e "/run/netns/$NS" ] && run "$BIN" killall --data-dir "$DATA" >/dev/null 2>&1
    for m in $(awk -v d="$WORK" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
        umount -l "$m"
    done
    ip netns del "$NS" 2>/dev/null
    if [ "$KUBEPODS_BEFORE" = 0 ]; then
        for d in /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods; do
            [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
        done
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# The node's namespace: an address and a default route on a veth whose peer is in the same
# namespace, so nothing sent there reaches the host.
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add nk0 type veth peer name nk1
ip -n "$NS" addr add 10.99.0.2/24 dev nk0
ip -n "$NS" link set nk0 up
ip -n "$NS" link set nk1 up
ip -n "$NS" route add default dev nk0

mkdir -p "$DATA/agent/images"
cp rootfs/out/nanokube-busybox.oci.tar "$DATA/agent/images/"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
echo "== nanokube $PROFILE at $commit, $(nproc) cores: one node, $TRIALS trials"
# nsenter itself (not the run function, whose subshell would be $!) so that $! is the server.
nsenter --net="/run/netns/$NS" "$BIN" server --data-dir "$DATA" --write-kubeconfig "$WORK/kubeconfig" \
    --bind-address 127.0.0.1 --https-listen-port 0 --node-name bench --node-ip 10.99.0.2 \
    --pod-logs-dir "$WORK/logs" --runtime-root "$RUNTIME" >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 300); do [ -f "$WORK/kubeconfig" ] && break; sleep 0.2; done
[ -f "$WORK/kubeconfig" ] || { echo "the server did not start:" >&2; tail -20 "$WORK/server.log" >&2; exit 1; }
node_ready() {
    run kubectl --kubeconfig "$WORK/kubeconfig" get node bench \
        -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True
}
for _ in $(seq 240); do node_ready && break; sleep 0.5; done
node_ready || { echo "the node did not become Ready:" >&2; tail -20 "$WORK/server.log" >&2; exit 1; }

status=0
run "$BENCH" "$WORK/kubeconfig" "$RUNTIME" "$TRIALS" || status=$?
if [ "$status" != 0 ]; then
    echo "== server log tail"; tail -30 "$WORK/server.log"
fi
exit "$status"
