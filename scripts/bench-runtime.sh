#!/usr/bin/env bash
# Benchmarks `nanokube runtime` against runc on this host, and against crun (and runc) in the
# cgroup v2 VM, since crun refuses hybrid cgroups: the same busybox bundle running /bin/true,
# the runtimes alternating in one run, `RUNTIME run --bundle B ID` (create + start + wait +
# delete) timed per container. Prints median, p95, peak RSS and the ratios.
# Then, on the host, `ctr run --rm` of the same image through Debian's containerd with runc and
# with nanokube (a link named nanokube-runc) as its runc binary, alternating, and the ratio.
# containerd runs on its own socket and dirs in a private mount namespace with a tmpfs /run (its
# 1.6 shim hard-codes /run/containerd/s), all removed at the end.
# Targets: nanokube <= 0.5x runc on the host, <= 1.0x crun in the VM, <= 1.0x runc under ctr.
#
# usage: sudo scripts/bench-runtime.sh [ITERATIONS (default 200)] [--no-vm] [--no-ctr] [--ctr-only]
# env:   BENCH_VM_RUNC=1 also runs runc in the VM (slow under TCG); VM_TIMEOUT (default 1800);
#        CTR_ITERATIONS `ctr run --rm` runs per runtime (default 40)
set -euo pipefail
crate="$(cd "$(dirname "$0")/.." && pwd)"
cd "$crate"
if [ "$(id -u)" != 0 ]; then echo "bench-runtime.sh: run as root" >&2; exit 1; fi
. scripts/env.sh
iterations=200 vm=1 ctr=1 host=1
for a in "$@"; do
  case "$a" in
    --no-vm) vm=0 ;;
    --no-ctr) ctr=0 ;;
    --ctr-only) host=0 vm=0 ;;
    [0-9]*) iterations="$a" ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done

cargo build --locked --quiet --release --bin nanokube
./rootfs/build.sh >/dev/null
target="$(cargo metadata --locked --no-deps --format-version 1 | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
nanokube="$target/release/nanokube"
bench="$target/bench"
mkdir -p "$bench"

# The timing driver (std only, static: the VM runs it too).
driver="$bench/bench_runtime"
if [ ! -x "$driver" ] || [ rootfs/bench/bench_runtime.rs -nt "$driver" ]; then
  rustc -O --edition 2021 -C target-feature=+crt-static -C relocation-model=static \
    rootfs/bench/bench_runtime.rs -o "$driver"
fi

# One bundle for all: runc's default spec, running /bin/true on the read-only default image.
bundle="$bench/bundle"
rm -rf "$bundle" && mkdir -p "$bundle"
(cd "$bundle" && runc spec)
python3 - "$bundle/config.json" "$crate/rootfs/out/rootfs" <<'PY'
import json, sys
path, root = sys.argv[1:]
c = json.load(open(path))
c["process"]["args"] = ["/bin/true"]
c["process"]["terminal"] = False
c["root"] = {"path": root, "readonly": True}
c["hostname"] = "bench"
json.dump(c, open(path, "w"), indent=2)
PY

work="$(mktemp -d /run/nanokube-bench.XXXXXX)"
ctd_dir="" ctd_pid=""
cleanup() {
  rm -rf "$work"
  [ -z "$ctd_dir" ] || ctd_down
}
trap cleanup EXIT
if [ "$host" = 1 ]; then
  echo "== host ($(uname -r), hybrid cgroups, $(nproc) cpus, load average $(cut -d' ' -f1-3 /proc/loadavg)): $iterations runs each"
  "$driver" "$iterations" "$bundle" "$work" "nanokube=$nanokube runtime" runc=/usr/sbin/runc
fi

# --- ctr run --rm through containerd ------------------------------------------------------------
ctd_ns=nkbench
ctr_() { ctr --address "$ctd_dir/containerd.sock" --namespace "$ctd_ns" "$@"; }
ctd_up() {
  local i
  for b in containerd containerd-shim-runc-v2 ctr unshare; do
    command -v "$b" >/dev/null || { echo "bench-runtime.sh: $b is missing (scripts/deps.sh installs containerd)" >&2; exit 1; }
  done
  # Not under /run: containerd's namespace gets a /run of its own.
  ctd_dir="$(mktemp -d /tmp/nanokube-bench-ctd.XXXXXX)"
  mkdir -p "$ctd_dir"/{root,state,tmp,opt,fifo,bin}
  cat >"$ctd_dir/config.toml" <<TOML
version = 2
root = "$ctd_dir/root"
state = "$ctd_dir/state"
temp = "$ctd_dir/tmp"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$ctd_dir/containerd.sock"
[ttrpc]
  address = "$ctd_dir/containerd.sock.ttrpc"
[debug]
  address = "$ctd_dir/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$ctd_dir/opt"
TOML
  # unshare execs sh, which execs containerd: $! is containerd's pid.
  unshare --mount --propagation private -- sh -c \
    'mount -t tmpfs -o mode=0755 nk-run /run && mkdir -p /run/containerd && exec containerd --config "$0"' \
    "$ctd_dir/config.toml" </dev/null >"$ctd_dir/containerd.log" 2>&1 &
  ctd_pid=$!
  for i in $(seq 100); do
    if ! kill -0 "$ctd_pid" 2>/dev/null; then echo "bench-runtime.sh: containerd exited at start:" >&2; tail -n 20 "$ctd_dir/containerd.log" >&2; exit 1; fi
    [ -S "$ctd_dir/containerd.sock" ] && ctr_ version >/dev/null 2>&1 && break
    sleep 0.1
  done
  ctr_ version >/dev/null || { echo "bench-runtime.sh: containerd does not answer on $ctd_dir/containerd.sock" >&2; tail -n 20 "$ctd_dir/containerd.log" >&2; exit 1; }
  ctr_ image import "$crate/rootfs/out/nanokube-busybox.oci.tar" >/dev/null
}
# Tasks, containers and the image go first, then containerd, any shim left (each names our socket),
# the cgroups ctr made (/<namespace>/<id>) and the dir.
ctd_down() {
  local id p d
  if [ -n "$ctd_pid" ] && kill -0 "$ctd_pid" 2>/dev/null; then
    for id in $(ctr_ container ls -q 2>/dev/null); do
      ctr_ task delete --force "$id" >/dev/null 2>&1 || true
      ctr_ container delete "$id" >/dev/null 2>&1 || true
    done
    ctr_ image rm nanokube/busybox:latest >/dev/null 2>&1 || true
    kill "$ctd_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$ctd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$ctd_pid" 2>/dev/null || true
    wait "$ctd_pid" 2>/dev/null || true
  fi
  for p in /proc/[0-9]*; do
    if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF "$ctd_dir/containerd.sock"; then kill -9 "${p#/proc/}" 2>/dev/null || true; fi
  done
  for d in /sys/fs/cgroup/"$ctd_ns" /sys/fs/cgroup/*/"$ctd_ns"; do
    if [ -d "$d" ]; then find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true; fi
    if [ -d "$d" ]; then echo "bench-runtime.sh: cgroup $d left behind" >&2; fi
  done
  rm -rf "$ctd_dir"
  ctd_dir="" ctd_pid=""
}

if [ "$ctr" = 1 ]; then
  ctr_iterations="${CTR_ITERATIONS:-40}"
  ctd_up
  ln -s "$nanokube" "$ctd_dir/bin/nanokube-runc"
  names=(nanokube runc) bins=("$ctd_dir/bin/nanokube-runc" /usr/sbin/runc)
  echo "== ctr run --rm (containerd $(containerd --version | awk '{print $3}'), nanokube/busybox:latest running /bin/true): $ctr_iterations runs each, 2 warm-up"
  : >"$ctd_dir/times"
  for ((i = -2; i < ctr_iterations; i++)); do
    for ((k = 0; k < ${#names[@]}; k++)); do
      # The first to go alternates from one iteration to the next.
      j=$(((k + (i & 1)) % ${#names[@]}))
      id="${names[$j]}-$((i + 2))"
      t0=$EPOCHREALTIME
      if ! out="$(ctr_ run --rm --fifo-dir "$ctd_dir/fifo" --runc-binary "${bins[$j]}" nanokube/busybox:latest "$id" /bin/true 2>&1)"; then
        echo "bench-runtime.sh: ctr run --rm with ${names[$j]} failed: $out" >&2
        tail -n 20 "$ctd_dir/containerd.log" >&2
        exit 1
      fi
      t1=$EPOCHREALTIME
      ((i < 0)) || echo "${names[$j]} $t0 $t1" >>"$ctd_dir/times"
    done
  done
  python3 - "$ctd_dir/times" <<'PY'
import sys
runs = {}
for line in open(sys.argv[1]):
    name, t0, t1 = line.split()
    runs.setdefault(name, []).append((float(t1) - float(t0)) * 1000)
def median(v):
    v = sorted(v); n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
def p95(v):
    v = sorted(v)
    return v[max(0, -(-95 * len(v) // 100) - 1)]
for name, v in runs.items():
    print(f"ctr-{name:<9} runs {len(v):4d}  median {median(v):8.1f} ms  p95 {p95(v):8.1f} ms")
print(f"ratio ctr run --rm nanokube/runc (median): {median(runs['nanokube']) / median(runs['runc']):.2f}")
PY
  ctd_down
fi

if [ "$vm" = 1 ]; then
  echo "== cgroup v2 VM (qemu TCG, 2 vCPUs: absolute times are emulated, ratios are what count)"
  # runc under TCG takes seconds per container; add it with BENCH_VM_RUNC=1.
  vm_runc=""
  if [ "${BENCH_VM_RUNC:-0}" = 1 ]; then vm_runc="runc=/usr/sbin/runc"; fi
  job="$bench/vm-job.sh"
  cat >"$job" <<JOB
mkdir -p /run/bench
"$driver" "$iterations" "$bundle" /run/bench "nanokube=$nanokube runtime" crun=/usr/bin/crun $vm_runc
JOB
  VM_EXTRA="$driver $bundle $nanokube" VM_TIMEOUT="${VM_TIMEOUT:-1800}" ./scripts/vm-test.sh --job "$job" |
    grep -aE '^(runtime|nanokube|crun|runc|ratio|bench_runtime|vm-test)'
fi
