#!/usr/bin/env bash
# Cluster DNS, side by side with Debian's dnsmasq in the same run: A queries/s and p50/p99
# latency against the node's DNS server (nanokube's agent, on 10.43.0.10) serving N Services, and
# against dnsmasq serving the same N names from a hosts file, same load generator
# (examples/dns_bench.rs: closed loop, one query in flight per thread). Everything runs inside a
# network namespace of this script's own; both servers listen on addresses local to it.
#
# usage: sudo ./scripts/bench-dns.sh [SERVICES] [THREADS] [SECONDS]   (1000 8 5)
#        PROFILE=debug for a quick check of the script without a release build.
set -euo pipefail
crate="$(cd "$(dirname "$0")/.." && pwd)"
cd "$crate"
services="${1:-1000}"
threads="${2:-8}"
seconds="${3:-5}"
profile="${PROFILE:-release}"
if [ "$(id -u)" != 0 ]; then echo "bench-dns.sh: run as root" >&2; exit 1; fi
./scripts/deps.sh >/dev/null
# dnsmasq-base is Debian's dnsmasq without the system service (which would take the host's
# port 53).
command -v dnsmasq >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsmasq-base >/dev/null
. scripts/env.sh
target="${CARGO_TARGET_DIR:-$crate/target}"
if [ "$profile" = release ]; then
  cargo build --locked --release --bin nanokube --example dns_bench
  out="$target/release"
else
  cargo build --locked --bin nanokube --example dns_bench
  out="$target/debug"
fi
[ -f rootfs/out/nanokube-busybox.oci.tar ] || ./rootfs/build.sh
nanokube="$out/nanokube"
load="$out/examples/dns_bench"

work="$(mktemp -d /tmp/nk-bench-dns.XXXXXX)"
ns="nkbenchdns$$"
cleanup() {
  set +e
  [ -n "${dnsmasq_pid:-}" ] && kill "$dnsmasq_pid" 2>/dev/null
  [ -n "${server_pid:-}" ] && kill -9 "$server_pid" 2>/dev/null
  nsenter --net=/run/netns/$ns "$nanokube" killall --data-dir "$work/data" >/dev/null 2>&1
  for m in $(awk -v w="$work" '$5 ~ "^"w {print $5}' /proc/self/mountinfo | sort -r); do umount -l "$m"; done
  ip netns del $ns 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add $ns
ip -n $ns link set lo up
ip -n $ns link add nk0 type veth peer name nk1
ip -n $ns addr add 10.99.0.2/24 dev nk0
ip -n $ns link set nk0 up; ip -n $ns link set nk1 up
ip -n $ns route add default dev nk0
inns() { nsenter --net=/run/netns/$ns "$@"; }

mkdir -p "$work/data/agent/images"
cp rootfs/out/nanokube-busybox.oci.tar "$work/data/agent/images/"
inns "$nanokube" server --data-dir "$work/data" \
  --write-kubeconfig "$work/kubeconfig" --bind-address 127.0.0.1 --https-listen-port 16443 \
  --node-name bench --node-ip 10.99.0.2 --pod-logs-dir "$work/logs" --runtime-root "$work/run" \
  > "$work/server.log" 2>&1 &
server_pid=$!
disown "$server_pid"   # killed at the end; no job report
for _ in $(seq 100); do [ -f "$work/kubeconfig" ] && break; sleep 0.1; done
k() { inns kubectl --kubeconfig "$work/kubeconfig" "$@"; }
for _ in $(seq 100); do k get node bench -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True && break; sleep 0.2; done

# N selectorless Services with fixed ClusterIPs, and the same names and addresses as a hosts file.
: > "$work/services.yaml"; : > "$work/hosts"; : > "$work/names"
for i in $(seq 0 $((services - 1))); do
  ip="10.43.$((1 + i / 250)).$((1 + i % 250))"
  name="svc-$i.default.svc.cluster.local"
  printf -- '---\napiVersion: v1\nkind: Service\nmetadata: {name: svc-%d}\nspec:\n  clusterIP: %s\n  ports: [{port: 80}]\n' "$i" "$ip" >> "$work/services.yaml"
  echo "$ip $name" >> "$work/hosts"
  echo "$name" >> "$work/names"
done
k create -f "$work/services.yaml" > /dev/null
last="svc-$((services - 1)).default.svc.cluster.local"
for _ in $(seq 150); do
  inns busybox nslookup "$last" 10.43.0.10 2>/dev/null | grep -q "Address: 10.43" && break
  sleep 0.2
done
inns busybox nslookup "$last" 10.43.0.10 | grep -q "Address: 10.43" || { echo "bench-dns.sh: the services never resolved" >&2; tail -20 "$work/server.log" >&2; exit 1; }

inns dnsmasq --keep-in-foreground --no-resolv --no-hosts --addn-hosts="$work/hosts" \
  --listen-address=127.0.0.1 --bind-interfaces --port=5353 --cache-size=10000 --local-ttl=5 \
  --user=root --pid-file="$work/dnsmasq.pid" --log-facility=- 2> "$work/dnsmasq.log" &
dnsmasq_pid=$!
disown "$dnsmasq_pid"
echo "$last" > "$work/last"
for _ in $(seq 50); do inns "$load" 127.0.0.1:5353 "$work/last" 1 1 | grep -q ' errors=0$' && break; sleep 0.1; done

run() { inns "$load" "$1" "$work/names" "$threads" "$seconds"; }
field() { sed -n "s/.*$1=\([0-9]*\).*/\1/p" <<< "$2"; }
echo "$services names, $threads threads, ${seconds}s per run, alternating:"
best_nk=""; best_dm=""
for round in 1 2; do
  nk="$(run 10.43.0.10:53)"; echo "  nanokube: $nk"
  dm="$(run 127.0.0.1:5353)"; echo "  dnsmasq:  $dm"
  # Each side's better run of the two counts (the machine is shared and noisy).
  if [ -z "$best_nk" ] || [ "$(field qps "$nk")" -gt "$(field qps "$best_nk")" ]; then best_nk="$nk"; fi
  if [ -z "$best_dm" ] || [ "$(field qps "$dm")" -gt "$(field qps "$best_dm")" ]; then best_dm="$dm"; fi
done
awk -v nq="$(field qps "$best_nk")" -v dq="$(field qps "$best_dm")" \
    -v np="$(field p99_us "$best_nk")" -v dp="$(field p99_us "$best_dm")" 'BEGIN {
  printf "queries/s: nanokube %d vs dnsmasq %d (%.2fx)\n", nq, dq, nq / dq
  printf "p99:       nanokube %d us vs dnsmasq %d us (%.2fx)\n", np, dp, np / dp
}'
