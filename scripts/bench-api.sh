#!/usr/bin/env bash
# API server benchmark: pod creates at 50 concurrent clients, list of 10k pods (JSON and Table),
# watch event latency to 100 watchers, mutating latency at a paced 100 writes/s, and the same
# number of durable puts to a single-node etcd on the same disk, side by side; Secret creates
# with encryption at rest on and off, in the same run.
# Last, audit logging's cost (AUDIT_N creates with the audit log off and on).
# Everything listens on loopback; state lives in a temporary directory removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
PODS=${PODS:-10000}
CLIENTS=${CLIENTS:-50}
WATCHERS=${WATCHERS:-100}
SECRETS=${SECRETS:-2000}

cargo build --release --bin nanokube --example api_bench >&2
BIN=target/release/nanokube
BENCH=target/release/examples/api_bench
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/nk-bench.XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PORT=$(free_port)
"$BIN" server --data-dir "$WORK/nk" --bind-address 127.0.0.1 --https-listen-port "$PORT" \
    --write-kubeconfig "$WORK/kubeconfig" --disable-agent >"$WORK/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -f "$WORK/kubeconfig" ] && break; sleep 0.1; done
export KUBECONFIG="$WORK/kubeconfig"
for ns in bench paced watch; do
    printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n' "$ns" | kubectl apply -f - >/dev/null
done

echo "== nanokube ($(nproc) cores, data dir on $(df --output=source "$WORK" | tail -1))"
"$BENCH" creates "$KUBECONFIG" bench "$CLIENTS" "$PODS"
"$BENCH" list "$KUBECONFIG" bench 5
"$BENCH" paced "$KUBECONFIG" paced 100 10
"$BENCH" watch "$KUBECONFIG" watch "$WATCHERS" 200
POD_BYTES=$(kubectl get pod bench-0 -n bench -o json | wc -c)

echo "== etcd $(/usr/bin/etcd --version | head -1 | awk '{print $3}'), single node, same disk"
EPORT=$(free_port); PPORT=$(free_port)
/usr/bin/etcd --data-dir "$WORK/etcd" --name bench \
    --listen-client-urls "http://127.0.0.1:$EPORT" --advertise-client-urls "http://127.0.0.1:$EPORT" \
    --listen-peer-urls "http://127.0.0.1:$PPORT" --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
    --initial-cluster "bench=http://127.0.0.1:$PPORT" >"$WORK/etcd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$EPORT/health" >/dev/null && break; sleep 0.1; done
"$BENCH" etcd "127.0.0.1:$EPORT" "$CLIENTS" "$PODS" "$POD_BYTES"
"$BENCH" etcd-paced "127.0.0.1:$EPORT" 100 10 "$POD_BYTES"

echo "== Secret creates ($SECRETS, $CLIENTS clients): encryption at rest on (aescbc) vs off"
secret_rate() { # $1: --secrets-encryption value; prints the creates' line
    local dir="$WORK/secrets-$1" port
    port=$(free_port)
    "$BIN" server --data-dir "$dir" --bind-address 127.0.0.1 --https-listen-port "$port" \
        --write-kubeconfig "$dir.kubeconfig" --disable-agent --secrets-encryption="$1" \
        >"$dir.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    for _ in $(seq 100); do [ -f "$dir.kubeconfig" ] && break; sleep 0.1; done
    "$BENCH" secrets "$dir.kubeconfig" default "$CLIENTS" "$SECRETS"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}
ON=$(secret_rate true); OFF=$(secret_rate false)
echo "encrypted:   $ON"
echo "unencrypted: $OFF"
rate() { sed -E 's/.* rate=([0-9]+).*/\1/' <<<"$1"; }
awk -v on="$(rate "$ON")" -v off="$(rate "$OFF")" \
    'BEGIN { printf "encryption costs: unencrypted/encrypted create rate = %.2f\n", off / on }'
# Audit logging's cost: pod and configmap creates on two fresh servers, one without an audit
# log and one logging every request at Metadata to a file, and the ratio of their rates.
AUDIT_N=${AUDIT_N:-3000}
printf 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n' >"$WORK/audit-policy.yaml"
audit_run() { # <name> [server flags...]: sets RATE_PODS and RATE_CMS
    local name=$1; shift
    local port; port=$(free_port)
    "$BIN" server --data-dir "$WORK/$name" --bind-address 127.0.0.1 --https-listen-port "$port" \
        --write-kubeconfig "$WORK/$name.kubeconfig" --disable-agent "$@" >"$WORK/$name.log" 2>&1 &
    local pid=$!
    PIDS+=($pid)
    for _ in $(seq 100); do [ -f "$WORK/$name.kubeconfig" ] && break; sleep 0.1; done
    printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bench\n' |
        kubectl --kubeconfig "$WORK/$name.kubeconfig" apply -f - >/dev/null
    local pods cms
    pods=$("$BENCH" creates "$WORK/$name.kubeconfig" bench "$CLIENTS" "$AUDIT_N")
    cms=$("$BENCH" configmap-creates "$WORK/$name.kubeconfig" bench "$CLIENTS" "$AUDIT_N")
    echo "  $name: $pods"
    echo "  $name: $cms"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    RATE_PODS=$(rate_of "$pods"); RATE_CMS=$(rate_of "$cms")
}
rate_of() { sed -n 's/.* rate=\([0-9]*\)\/s.*/\1/p' <<<"$1"; }
echo "== audit log: $AUDIT_N creates each, $CLIENTS clients, off vs Metadata for everything"
audit_run audit-off
OFF_PODS=$RATE_PODS; OFF_CMS=$RATE_CMS
audit_run audit-on --audit-log-path "$WORK/audit.log" --audit-policy-file "$WORK/audit-policy.yaml"
ON_PODS=$RATE_PODS; ON_CMS=$RATE_CMS
echo "audit log written: $(wc -l <"$WORK/audit.log") events, $(du -h "$WORK/audit.log" | cut -f1)"
awk -v a="$OFF_PODS" -v b="$ON_PODS" -v c="$OFF_CMS" -v d="$ON_CMS" 'BEGIN {
    printf "audit on/off rate ratio: pods %.2f, configmaps %.2f\n", b / a, d / c }'
