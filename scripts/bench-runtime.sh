#!/usr/bin/env bash
# Benchmarks `nanokube runtime` against runc on this host, and against crun (and runc) in the
# cgroup v2 VM, since crun refuses hybrid cgroups: the same busybox bundle running /bin/true,
# the runtimes alternating in one run, `RUNTIME run --bundle B ID` (create + start + wait +
# delete) timed per container. Prints median, p95, peak RSS and the ratios.
# Targets: nanokube <= 0.5x runc on the host, <= 1.0x crun in the VM.
#
# usage: sudo scripts/bench-runtime.sh [ITERATIONS (default 200)] [--no-vm]
# env:   BENCH_VM_RUNC=1 also runs runc in the VM (slow under TCG); VM_TIMEOUT (default 1800)
set -euo pipefail
crate="$(cd "$(dirname "$0")/.." && pwd)"
cd "$crate"
if [ "$(id -u)" != 0 ]; then echo "bench-runtime.sh: run as root" >&2; exit 1; fi
. scripts/env.sh
iterations=200 vm=1
for a in "$@"; do
  case "$a" in
    --no-vm) vm=0 ;;
    [0-9]*) iterations="$a" ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done

cargo build --locked --quiet --release --bin nanokube
./rootfs/build.sh >/dev/null
nanokube="$crate/target/release/nanokube"
bench="$crate/target/bench"
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
trap 'rm -rf "$work"' EXIT
echo "== host ($(uname -r), hybrid cgroups, $(nproc) cpus, load average $(cut -d' ' -f1-3 /proc/loadavg)): $iterations runs each"
"$driver" "$iterations" "$bundle" "$work" "nanokube=$nanokube runtime" runc=/usr/sbin/runc

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
