#!/usr/bin/env bash
# Quickstart: installs what is missing, builds nanokube and the default image, starts a one-node
# cluster (`nanokube server`, which runs the node's agent too), runs a demo app (two busybox
# httpd pods) and shows each pod answering on its own IP, then logs and exec through the API. The cluster lives in a
# network namespace of its own (nanokube-quickstart), so nothing touches this host's network;
# kubectl reaches it through nsenter. Everything is removed at the end unless KEEP=1.
#
# usage: sudo ./scripts/quickstart.sh        (KEEP=1 leaves the cluster running and says how to use it)
set -euo pipefail
crate="$(cd "$(dirname "$0")/.." && pwd)"
cd "$crate"
if [ "$(id -u)" != 0 ]; then echo "quickstart.sh: run as root (sudo ./scripts/quickstart.sh)" >&2; exit 1; fi

./scripts/deps.sh
. scripts/env.sh
echo "== building nanokube (release) and the default image"
cargo build --locked --release --bin nanokube
./rootfs/build.sh
target="${CARGO_TARGET_DIR:-$crate/target}"
nanokube="$target/release/nanokube"

ns=nanokube-quickstart
data="/tmp/nanokube-quickstart"
run() { nsenter --net=/run/netns/$ns "$@"; }
k() { run kubectl --kubeconfig "$data/kubeconfig" "$@"; }
stop() {
  set +e
  [ -n "${server:-}" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  run "$nanokube" killall --data-dir "$data/data" >/dev/null 2>&1
  for m in $(awk -v d="$data" '$5 ~ "^"d {print $5}' /proc/self/mountinfo | sort -r); do umount -l "$m"; done
  ip netns del $ns 2>/dev/null
  rm -rf "$data"
}
stop
trap 'if [ "${KEEP:-}" != 1 ]; then stop; fi' EXIT

echo "== a network namespace for the node ($ns), with an address of its own"
ip netns add $ns
ip -n $ns link set lo up
ip -n $ns link add nk0 type veth peer name nk1
ip -n $ns addr add 10.99.0.2/24 dev nk0
ip -n $ns link set nk0 up && ip -n $ns link set nk1 up
ip -n $ns route add default dev nk0

echo "== nanokube server (control plane + agent); the default image is imported from agent/images"
mkdir -p "$data/data/agent/images"
cp rootfs/out/nanokube-busybox.oci.tar "$data/data/agent/images/"
run "$nanokube" server --data-dir "$data/data" --write-kubeconfig "$data/kubeconfig" \
  --node-name quickstart --node-ip 10.99.0.2 --pod-logs-dir "$data/logs" \
  --runtime-root "$data/run" > "$data/server.log" 2>&1 &
server=$!
for _ in $(seq 150); do [ -f "$data/kubeconfig" ] && break; sleep 0.2; done
k wait --for=condition=Ready node/quickstart --timeout=60s
k get nodes -o wide

echo "== a demo app: two httpd pods, placed on the node by hand (the scheduler and the workload"
echo "   controllers come with their issue; then this becomes a Deployment)"
for i in 1 2; do
  k apply -f - <<YAML
apiVersion: v1
kind: Pod
metadata: {name: hello-$i, labels: {app: hello}}
spec:
  nodeName: quickstart
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: nanokube/busybox
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'echo "hello from \$(hostname)" > /tmp/index.html; exec httpd -f -p 8080 -h /tmp']
    readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
YAML
done
k wait --for=condition=Ready pod -l app=hello --timeout=120s
k get pods -o wide
echo "== each pod answers on its own IP (from the node)"
for ip in $(k get pods -l app=hello -o jsonpath='{.items[*].status.podIP}'); do
  printf '%s -> ' "$ip"
  for _ in $(seq 50); do run curl -s --max-time 1 "http://$ip:8080/" && break; sleep 0.2; done
done
echo "== logs and exec through the API server and the kubelet"
pod=$(k get pods -l app=hello -o jsonpath='{.items[0].metadata.name}')
k logs "$pod" || true
k exec "$pod" -- sh -c 'echo "inside $(hostname): $(head -1 /etc/resolv.conf)"'
echo "(Services, cluster DNS and the proxy come with the services issue; the app then answers on its ClusterIP.)"
if [ "${KEEP:-}" = 1 ]; then
  echo "== the cluster keeps running; use it with:"
  echo "   sudo nsenter --net=/run/netns/$ns kubectl --kubeconfig $data/kubeconfig get pods"
  echo "   stop it with: sudo kill $server; sudo nsenter --net=/run/netns/$ns $nanokube killall --data-dir $data/data; sudo ip netns del $ns"
  trap - EXIT
fi
