#!/usr/bin/env bash
# API server benchmark: pod creates at 50 concurrent clients, list of 10k pods (JSON and Table),
# watch event latency to 100 watchers, mutating latency at a paced 100 writes/s, and the same
# number of durable puts to a single-node etcd on the same disk, side by side; Secret creates
# with encryption at rest on and off, in the same run.
# Then audit logging's cost (AUDIT_N creates with the audit log off and on), and last RBAC's
# (pod creates with 5000 RoleBindings present, Node,RBAC vs AlwaysAllow).
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
# RBAC's cost: pod creates by a ServiceAccount that one RoleBinding among $BINDINGS allows, on a
# server authorizing with Node,RBAC and on one with AlwaysAllow holding the same objects; the
# ratio of their p99 latencies (target <= 1.1).
RBAC_N=${RBAC_N:-3000}
BINDINGS=${BINDINGS:-5000}
p99_of() { sed -n 's/.* p99=\([0-9.]*\)ms.*/\1/p' <<<"$1"; }
rbac_run() { # <name> <--authorization-mode>: prints the creates' line
    local name=$1 mode=$2 port kc
    port=$(free_port)
    kc="$WORK/$name.kubeconfig"
    "$BIN" server --data-dir "$WORK/$name" --bind-address 127.0.0.1 --https-listen-port "$port" \
        --write-kubeconfig "$kc" --disable-agent --authorization-mode "$mode" >"$WORK/$name.log" 2>&1 &
    local pid=$!
    PIDS+=($pid)
    for _ in $(seq 100); do [ -f "$kc" ] && break; sleep 0.1; done
    kubectl --kubeconfig "$kc" create namespace bench >/dev/null
    kubectl --kubeconfig "$kc" -n bench create serviceaccount creator >/dev/null
    kubectl --kubeconfig "$kc" -n bench create role pod-creator --verb=create --resource=pods >/dev/null
    python3 - "$BINDINGS" >"$WORK/$name-bindings.json" <<'PY'
import json, sys
n = int(sys.argv[1])
items = [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
          "metadata": {"name": f"b{i}", "namespace": f"ns{i % 50}"},
          "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
          "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": f"user{i}"}]}
         for i in range(n - 1)]
items.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
              "metadata": {"name": "creator", "namespace": "bench"},
              "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-creator"},
              "subjects": [{"kind": "ServiceAccount", "name": "creator", "namespace": "bench"}]})
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
PY
    for i in $(seq 0 49); do echo "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"ns$i\"}}"; done |
        kubectl --kubeconfig "$kc" create -f - >/dev/null
    kubectl --kubeconfig "$kc" create -f "$WORK/$name-bindings.json" >/dev/null
    local token
    token=$(kubectl --kubeconfig "$kc" -n bench create token creator --duration 2h)
    cp "$kc" "$kc.sa"
    kubectl --kubeconfig "$kc.sa" config set-credentials creator --token "$token" >/dev/null
    kubectl --kubeconfig "$kc.sa" config set-context --current --user creator >/dev/null
    "$BENCH" creates "$kc.sa" bench "$CLIENTS" "$RBAC_N"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}
echo "== RBAC: $RBAC_N pod creates by a ServiceAccount, $CLIENTS clients, $BINDINGS RoleBindings present"
RBAC_ON=$(rbac_run rbac-on Node,RBAC)
RBAC_OFF=$(rbac_run rbac-off AlwaysAllow)
echo "Node,RBAC:   $RBAC_ON"
echo "AlwaysAllow: $RBAC_OFF"
awk -v on="$(p99_of "$RBAC_ON")" -v off="$(p99_of "$RBAC_OFF")" \
    'BEGIN { printf "RBAC costs: p99 with RBAC / p99 without = %.2f (target <= 1.1)\n", on / off }'
