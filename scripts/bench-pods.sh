#!/usr/bin/env bash
# Pod startup, side by side with podman in the same run: the time from a pod's create request to
# its Running status as seen by a watch (image present), for one pod and for a burst of 100
# pods on one node; against `podman run -d` of the same image and count (its default network).
# Then the RSS of the agent's shims. Both run inside network namespaces of this script's own.
#
# usage: sudo ./scripts/bench-pods.sh [BURST]       (BURST defaults to 100)
# Targets (issue 10): single pod p50 <= 150 ms, burst p99 <= 1 s, and <= 0.5x podman for both.
set -euo pipefail
crate="$(cd "$(dirname "$0")/.." && pwd)"
cd "$crate"
burst="${1:-100}"
if [ "$(id -u)" != 0 ]; then echo "bench-pods.sh: run as root" >&2; exit 1; fi
./scripts/deps.sh >/dev/null
command -v podman >/dev/null || { apt-get install -y podman >/dev/null; }
. scripts/env.sh
target="${CARGO_TARGET_DIR:-$crate/target}"
cargo build --locked --release --bin nanokube
[ -f rootfs/out/nanokube-busybox.oci.tar ] || ./rootfs/build.sh
nanokube="$target/release/nanokube"

work="$(mktemp -d /tmp/nk-bench-pods.XXXXXX)"
ns="nkbench$$"
pns="nkbenchp$$"
cleanup() {
  set +e
  [ -n "${server_pid:-}" ] && kill -9 "$server_pid" 2>/dev/null
  nsenter --net=/run/netns/$ns "$nanokube" killall --data-dir "$work/data" >/dev/null 2>&1
  for m in $(awk -v w="$work" '$5 ~ "^"w {print $5}' /proc/self/mountinfo | sort -r); do umount -l "$m"; done
  nsenter --net=/run/netns/$pns podman rm -f -a >/dev/null 2>&1
  ip netns del $ns 2>/dev/null; ip netns del $pns 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
for n in $ns $pns; do
  ip netns add $n
  ip -n $n link set lo up
  ip -n $n link add nk0 type veth peer name nk1
  ip -n $n addr add 10.99.0.2/24 dev nk0
  ip -n $n link set nk0 up; ip -n $n link set nk1 up
  ip -n $n route add default dev nk0
done

mkdir -p "$work/data/agent/images"
cp rootfs/out/nanokube-busybox.oci.tar "$work/data/agent/images/"
nsenter --net=/run/netns/$ns "$nanokube" server --data-dir "$work/data" \
  --write-kubeconfig "$work/kubeconfig" --bind-address 127.0.0.1 --https-listen-port 16443 \
  --node-name bench --node-ip 10.99.0.2 --pod-logs-dir "$work/logs" --runtime-root "$work/run" \
  > "$work/server.log" 2>&1 &
server_pid=$!
disown "$server_pid"   # killed at the end; no job report
for _ in $(seq 100); do [ -f "$work/kubeconfig" ] && break; sleep 0.1; done
k() { nsenter --net=/run/netns/$ns kubectl --kubeconfig "$work/kubeconfig" "$@"; }
for _ in $(seq 100); do k get node bench -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True && break; sleep 0.2; done

# The measuring client: creates pods over the API and times each to Running on one watch.
cat > "$work/measure.py" <<'PY'
import base64, json, ssl, sys, tempfile, time, http.client, threading, yaml
kc = yaml.safe_load(open(sys.argv[1]))
count = int(sys.argv[2]); prefix = sys.argv[3]
u = kc["users"][0]["user"]; c = kc["clusters"][0]["cluster"]
d = tempfile.mkdtemp()
for name, key in [("ca", c["certificate-authority-data"]), ("crt", u["client-certificate-data"]), ("key", u["client-key-data"])]:
    open(f"{d}/{name}", "wb").write(base64.b64decode(key))
ctx = ssl.create_default_context(cafile=f"{d}/ca")
ctx.load_cert_chain(f"{d}/crt", f"{d}/key")
host, port = c["server"].split("//")[1].split(":")
def conn(): return http.client.HTTPSConnection(host, int(port), context=ctx)
created, running = {}, {}
done = threading.Event()
def watch():
    w = conn()
    w.request("GET", f"/api/v1/namespaces/default/pods?watch=1&labelSelector=bench%3D{prefix}")
    r = w.getresponse()
    for line in r:
        ev = json.loads(line)
        o = ev["object"]; n = o["metadata"]["name"]
        if o.get("status", {}).get("phase") == "Running" and n not in running:
            running[n] = time.monotonic()
            if len(running) == count: done.set(); return
t = threading.Thread(target=watch, daemon=True); t.start()
time.sleep(0.5)
api = conn()
for i in range(count):
    name = f"{prefix}-{i}"
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": prefix}},
            "spec": {"nodeName": "bench", "terminationGracePeriodSeconds": 0, "containers": [{"name": "c",
            "image": "nanokube/busybox", "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}]}}
    created[name] = time.monotonic()
    api.request("POST", "/api/v1/namespaces/default/pods", json.dumps(body), {"Content-Type": "application/json"})
    r = api.getresponse(); r.read()
    assert r.status == 201, r.status
if not done.wait(300): sys.exit(f"only {len(running)} of {count} pods Running")
lat = sorted((running[n] - created[n]) * 1000 for n in created)
p = lambda q: lat[min(len(lat) - 1, int(round(q * (len(lat) - 1))))]
print(f"{p(0.5):.0f} {p(0.99):.0f}")
PY
python3 -c 'import yaml' 2>/dev/null || apt-get install -y python3-yaml >/dev/null
measure() { nsenter --net=/run/netns/$ns python3 "$work/measure.py" "$work/kubeconfig" "$@"; }

# podman: the same image, `podman run -d` on its default network, timed from the call to its
# return (the container is running then), one and a burst in parallel. Its default nofile limit
# (1048576) needs CAP_SYS_RESOURCE, which some sandboxes withhold even from root, so the
# limits are given as the pods get them (the shim's, inherited).
nsenter --net=/run/netns/$pns podman load -q -i rootfs/out/nanokube-busybox.oci.tar >/dev/null
img=$(nsenter --net=/run/netns/$pns podman images --format '{{.Repository}}:{{.Tag}}' | grep busybox | head -1)
# crun refuses this host's hybrid cgroups: podman uses runc, its other runtime.
podman_one() {
  local s e
  s=$(date +%s%N)
  nsenter --net=/run/netns/$pns podman run -d --runtime /usr/sbin/runc \
    --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "$img" sleep 3600 >/dev/null || return 1
  e=$(date +%s%N)
  echo $(( (e - s) / 1000000 ))
}
podman_burst() {
  local n=$1 i
  for i in $(seq "$n"); do podman_one & done > "$work/podman-burst.txt"; wait
  [ "$(wc -l < "$work/podman-burst.txt")" = "$n" ] || { echo "podman: only $(wc -l < "$work/podman-burst.txt") of $n containers started" >&2; exit 1; }
  sort -n "$work/podman-burst.txt" | awk '{a[NR]=$1} END {printf "%d %d\n", a[int((NR+1)/2)], a[int(NR*0.99+0.5)]}'
}
median_of() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "== single pod, create -> Running (5 runs, median of p50)"
nk_single=$(for i in 1 2 3 4 5; do measure 1 "one$i" | cut -d' ' -f1; done | median_of)
pm_single=$(for i in 1 2 3 4 5; do podman_one || exit 1; done | median_of)
[ -n "$pm_single" ] || { echo "podman run failed" >&2; exit 1; }
echo "== burst of $burst pods"
read -r nk_p50 nk_p99 < <(measure "$burst" burst)
read -r pm_p50 pm_p99 < <(podman_burst "$burst")
shims=$(pgrep -f "shim --dir $work/data" | tr '\n' ' ')
rss=0; pss=0; n=0
for p in $shims; do
  r=$(awk '/^Rss:/ {print $2}' /proc/$p/smaps_rollup); s=$(awk '/^Pss:/ {print $2}' /proc/$p/smaps_rollup)
  rss=$((rss + r)); pss=$((pss + s)); n=$((n + 1))
done
server_rss=$(awk '/^VmRSS:/ {print $2}' /proc/$server_pid/status)
conmon_rss=$(for p in $(pgrep -x conmon | head -20); do awk '/^VmRSS:/ {print $2}' /proc/$p/status; done | median_of)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'; }
printf '\n%-34s %12s %12s %8s\n' "" "nanokube" "podman" "ratio"
printf '%-34s %10s ms %10s ms %8s\n' "single pod to Running, median" "$nk_single" "$pm_single" "$(ratio "$nk_single" "$pm_single")"
printf '%-34s %10s ms %10s ms %8s\n' "burst of $burst, p50" "$nk_p50" "$pm_p50" "$(ratio "$nk_p50" "$pm_p50")"
printf '%-34s %10s ms %10s ms %8s\n' "burst of $burst, p99" "$nk_p99" "$pm_p99" "$(ratio "$nk_p99" "$pm_p99")"
printf '%-34s %10s KB %10s KB %8s\n' "monitor RSS per pod (shim/conmon)" "$((n > 0 ? rss / n : 0))" "${conmon_rss:-0}" "$(ratio "$((n > 0 ? rss / n : 0))" "${conmon_rss:-0}")"
printf '%-34s %10s KB\n' "shim PSS per pod" "$((n > 0 ? pss / n : 0))"
printf '%-34s %10s KB\n' "server + agent RSS ($n pods)" "$server_rss"
