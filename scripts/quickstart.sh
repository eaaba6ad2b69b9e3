#!/usr/bin/env bash
# Quickstart: installs what is missing, builds nanokube and the default image, starts a one-node
# cluster (`nanokube server`, which runs the node's agent too), runs a demo app (a Deployment of
# three busybox httpd replicas behind a Service) and shows it answering on the Service's cluster
# IP and DNS name, a deleted pod replaced, then logs and exec through the API. The cluster lives in a
# network namespace of its own (nanokube-quickstart), so nothing touches this host's network;
# kubectl reaches it through nsenter. Everything is removed at the end unless KEEP=1.
#
# usage: sudo ./scripts/quickstart.sh        (KEEP=1 leaves the cluster running and says how to use it;
#        NANOKUBE=path/to/nanokube uses that binary instead of building a release one)
set -euo pipefail
crate="$(cd "$(dirname "$0")/.." && pwd)"
cd "$crate"
if [ "$(id -u)" != 0 ]; then echo "quickstart.sh: run as root (sudo ./scripts/quickstart.sh)" >&2; exit 1; fi

./scripts/deps.sh
. scripts/env.sh
echo "== building nanokube (release) and the default image"
[ -n "${NANOKUBE:-}" ] || cargo build --locked --release --bin nanokube
./rootfs/build.sh
target="${CARGO_TARGET_DIR:-$crate/target}"
nanokube="${NANOKUBE:-$target/release/nanokube}"

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

echo "== a demo app: a Deployment of three busybox httpd replicas, and a Service in front of it"
k apply -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: hello}
spec:
  replicas: 3
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: nanokube/busybox
        imagePullPolicy: IfNotPresent
        command: [sh, -c, 'echo "hello from $(hostname)" > /tmp/index.html; exec httpd -f -p 8080 -h /tmp']
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
YAML
k expose deployment hello --port 80 --target-port http
k rollout status deployment/hello --timeout=120s
k get deployment,replicaset,pods -o wide
k get service hello
k get endpointslices -l kubernetes.io/service-name=hello
vip=$(k get service hello -o jsonpath='{.spec.clusterIP}')
echo "== the Service answers on its cluster IP $vip, round-robin over the replicas (from the node)"
for _ in $(seq 6); do run curl -s --max-time 2 "http://$vip/"; done
echo "== and by its DNS name from inside a pod (cluster DNS at 10.43.0.10)"
pod=$(k get pods -l app=hello -o jsonpath='{.items[0].metadata.name}')
for name in hello hello.default.svc.cluster.local; do
  printf '%s -> ' "$name"
  k exec "$pod" -- wget -qO- "http://$name/"
done
echo "== a deleted pod is replaced (kubelet -> API -> ReplicaSet controller -> scheduler -> kubelet)"
k delete pod "$pod" --wait=false
k rollout status deployment/hello --timeout=120s
k get pods -l app=hello
echo "== logs and exec through the API server and the kubelet"
pod=$(k get pods -l app=hello -o jsonpath='{.items[0].metadata.name}')
k logs "$pod" || true
k exec "$pod" -- sh -c 'echo "inside $(hostname): $(grep nameserver /etc/resolv.conf)"'
if [ "${KEEP:-}" = 1 ]; then
  echo "== the cluster keeps running; use it with:"
  echo "   sudo nsenter --net=/run/netns/$ns kubectl --kubeconfig $data/kubeconfig get pods"
  echo "   stop it with: sudo kill $server; sudo nsenter --net=/run/netns/$ns $nanokube killall --data-dir $data/data; sudo ip netns del $ns"
  trap - EXIT
fi
