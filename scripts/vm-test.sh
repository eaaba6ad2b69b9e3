#!/usr/bin/env bash
# Runs the cgroup v2 tests inside a VM: Debian's cloud kernel under qemu (TCG, no KVM needed), no
# network device, an initramfs holding busybox, the nanokube binary, rootfs/out (image + probe),
# the needed kernel modules and the test binaries. The VM mounts a pure cgroup v2 hierarchy (this
# host is hybrid), runs the tests, prints "NANOKUBE-VM-RESULT exit=N" and powers off; this script
# exits with N, or 1 when the marker never comes (crash, timeout).
# The checkout goes to /nanokube in the VM and the target dir to /nanokube/target, wherever they
# lie on the host (the VM's init mounts tmpfs over /tmp and /run); the job first binds them at
# their host paths, which the test binaries have compiled in.
#
# usage: scripts/vm-test.sh             run the cgroup tests (see docs/vm-test.md for which)
#        scripts/vm-test.sh --job FILE  run FILE (a busybox sh script) instead; extra files to
#                                       ship go in $VM_EXTRA (space-separated absolute paths; those
#                                       in the checkout or target dir are seen at the same path)
#        scripts/vm-test.sh --shell     interactive shell on the console (exit it to power off)
# env:   VM_TIMEOUT (seconds, default 600), VM_MEM (MiB, default 2048), VM_SMP (default 2),
#        VM_TEST_FILTER_RUNTIME (libtest filters for tests/runtime.rs, space-separated, a test runs
#        when its name contains any; default "cgroup memory oom pids cpu")
set -euo pipefail
crate="$(cd "$(dirname "$0")/.." && pwd)"
cd "$crate"
if [ "$(id -u)" != 0 ]; then echo "vm-test.sh: run as root (it builds device nodes)" >&2; exit 1; fi
. scripts/env.sh

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
mode=tests job_file=
case "${1:-}" in
  --job) [ -f "${2:-}" ] || usage; mode=job; job_file="$(realpath "$2")" ;;
  --shell) mode=shell ;;
  "") ;;
  *) usage ;;
esac
timeout_s="${VM_TIMEOUT:-600}"
target="$(cargo metadata --locked --no-deps --format-version 1 | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
# Per run, so that a benchmark and a test run can share the machine.
work="$target/vm"
mkdir -p "$work"
run_dir="$(mktemp -d "$work/run.XXXXXX")"
trap 'rm -rf "$run_dir"' EXIT
stage="$run_dir/initramfs"
cpio_file="$run_dir/initramfs.cpio"
log="$work/console-$mode.log"

vmlinuz="$(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n1)"
if [ -z "$vmlinuz" ]; then
  echo "vm-test.sh: no /boot/vmlinuz-*-cloud-amd64; install linux-image-cloud-amd64 (scripts/deps.sh)" >&2
  exit 1
fi
kver="${vmlinuz#/boot/vmlinuz-}"

# --- what goes in -------------------------------------------------------------------------------
# A --job brings what it needs (VM_EXTRA); the tests need the debug binary they were built with.
if [ "$mode" != job ]; then cargo build --locked --quiet --bin nanokube; fi
./rootfs/build.sh >/dev/null

# Test binaries: tests/cgroups.rs and tests/runtime_ops.rs (freezer, update, events) whole, and the
# cgroup-related tests of tests/runtime.rs (by name filter), when present.
declare -a test_bins=() test_filters=()
if [ "$mode" = tests ]; then
  have_tests="$(cargo metadata --locked --no-deps --format-version 1 | python3 -c '
import json, sys
pkg = next(p for p in json.load(sys.stdin)["packages"] if p["name"] == "nanokube")
print(" ".join(t["name"] for t in pkg["targets"] if "test" in t["kind"] and t["name"] in ("cgroups", "runtime", "runtime_ops")))')"
  for t in $have_tests; do
    exe="$(cargo test --locked --quiet --no-run --message-format=json-render-diagnostics --test "$t" | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$t")"
    test_bins+=("$exe")
    if [ "$t" = runtime ]; then test_filters+=("${VM_TEST_FILTER_RUNTIME:-cgroup memory oom pids cpu}"); else test_filters+=(""); fi
  done
fi

rm -rf "$stage"
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,root,vm}
install -m 0755 /bin/busybox "$stage/bin/busybox"
install -m 0755 rootfs/vm/init "$stage/init"
mknod -m 0600 "$stage/dev/console" c 5 1
mknod -m 0666 "$stage/dev/null" c 1 3
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$stage/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' >"$stage/etc/group"

# Where a host path lies in the VM: the target dir under /nanokube/target, the rest of the checkout
# under /nanokube, anything else (runc, libraries) at its own path.
vm_path() {
  case "$1" in
    "$target"/*) echo "/nanokube/target/${1#"$target"/}" ;;
    "$crate"/*) echo "/nanokube/${1#"$crate"/}" ;;
    *) echo "$1" ;;
  esac
}
# Copies a file or directory into the VM (at vm_path); ELF files lose their debug info (the VM's RAM
# holds the whole initramfs) and bring the shared libraries they link.
ship() {
  local src="$1" dst
  dst="$stage$(vm_path "$1")"
  mkdir -p "$(dirname "$dst")"
  if [ -d "$src" ]; then mkdir -p "$dst"; cp -a "$src/." "$dst/"; return; fi
  if head -c4 "$src" | grep -q 'ELF'; then
    objcopy --strip-debug "$src" "$dst" 2>/dev/null || cp -L "$src" "$dst"
    chmod 0755 "$dst"
    local lib
    for lib in $(ldd "$src" 2>/dev/null | grep -o '/[^ ]*' || true); do
      [ -e "$stage$lib" ] || { mkdir -p "$(dirname "$stage$lib")"; cp -L "$lib" "$stage$lib"; }
    done
  else
    cp -L "$src" "$dst"
  fi
}
[ -x "$target/debug/nanokube" ] && ship "$target/debug/nanokube"
ship "$crate/rootfs/out"
[ -d "$crate/tests" ] && ship "$crate/tests"
for b in /usr/sbin/runc /usr/bin/crun; do [ -x "$b" ] && ship "$b"; done
for b in "${test_bins[@]}"; do ship "$b"; done
for f in ${VM_EXTRA:-}; do ship "$f"; done

# Kernel modules the runtime may need that the cloud kernel builds as modules, in load order.
: >"$stage/vm/modules"
for m in $(modprobe -S "$kver" --show-depends overlay veth bridge 2>/dev/null | awk '$1 == "insmod" {print $2}'); do
  mkdir -p "$stage$(dirname "$m")"
  cp "$m" "$stage$m"
  grep -qxF "$m" "$stage/vm/modules" || echo "$m" >>"$stage/vm/modules"
done

# The job the VM runs. A preamble first binds /nanokube and /nanokube/target at the host's paths
# of the checkout and target dir: the test binaries have those compiled in, and the init's tmpfs
# on /tmp or /run would hide them had they been shipped there.
q() { printf "'%s'" "${1//\'/\'\\\'\'}"; } # one word of busybox sh
{
  echo "# generated by scripts/vm-test.sh"
  echo "host_crate=$(q "$crate") host_target=$(q "$target")"
  cat <<'JOB'
vm_bind() { # $1: a dir in the VM, $2: the host path to show it at
  [ "$1" = "$2" ] && return 0
  mkdir -p "$1" "$2" && mount --bind "$1" "$2" || { echo "vm: cannot bind $1 at $2"; exit 1; }
}
vm_bind /nanokube "$host_crate"
[ "$host_target" = "$host_crate/target" ] || vm_bind /nanokube/target "$host_target"
JOB
} >"$stage/vm/job.sh"
case "$mode" in
  job) cat "$job_file" >>"$stage/vm/job.sh" ;;
  shell) printf 'echo "vm: interactive shell; exit to power off"\nsetsid cttyhack sh\n' >>"$stage/vm/job.sh" ;;
  tests)
    {
      cat <<'JOB'
for c in memory cpu pids; do
  grep -qw $c /sys/fs/cgroup/cgroup.controllers ||
    { echo "vm: cgroup v2 controller $c missing (cgroup.controllers: $(cat /sys/fs/cgroup/cgroup.controllers))"; exit 1; }
done
# A smoke test of the hierarchy itself: pids.max stops the probe's fork bomb. Each step says what
# was missing when it fails.
probe="$host_crate/rootfs/out/probe"
[ -x "$probe" ] || { echo "vm: smoke test: $probe is missing in the VM (rootfs/out is shipped to /nanokube/rootfs/out: $(ls -ld /nanokube/rootfs/out/probe 2>&1))"; exit 1; }
mkdir /sys/fs/cgroup/vm-smoke || { echo "vm: smoke test: cannot create /sys/fs/cgroup/vm-smoke"; exit 1; }
echo 8 >/sys/fs/cgroup/vm-smoke/pids.max ||
  { echo "vm: smoke test: cannot write vm-smoke/pids.max (pids not in the root's cgroup.subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control))"; rmdir /sys/fs/cgroup/vm-smoke; exit 1; }
out="$(sh -c 'echo $$ >/sys/fs/cgroup/vm-smoke/cgroup.procs || exit 1; exec "$0" forkbomb 50' "$probe" 2>&1)"
rc=$?
rmdir /sys/fs/cgroup/vm-smoke
echo "vm: smoke test in pids.max=8: $out"
case "$out" in
  'forked 7 errno EAGAIN') ;;
  *) echo "vm: smoke test: pids.max=8 not enforced: the probe's fork bomb should end with 'forked 7 errno EAGAIN'; it exited $rc saying: $out"; exit 1 ;;
esac
rc=0
cd "$host_crate"
export NANOKUBE_VM=1 RUST_BACKTRACE=1 TMPDIR=/tmp
JOB
      if ((${#test_bins[@]} == 0)); then echo "echo 'vm: no cgroup test binaries (tests/cgroups.rs, tests/runtime.rs) yet'"; fi
      for i in "${!test_bins[@]}"; do
        echo "echo $(q "vm: running $(basename "${test_bins[$i]}") ${test_filters[$i]}")"
        echo "[ -x $(q "${test_bins[$i]}") ] || { echo $(q "vm: test binary ${test_bins[$i]} is missing in the VM"); exit 1; }"
        echo "$(q "${test_bins[$i]}") --test-threads=1 ${test_filters[$i]} || rc=1"
      done
      echo "exit \$rc"
    } >>"$stage/vm/job.sh"
    ;;
esac

(cd "$stage" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet) >"$cpio_file"
echo "vm-test: kernel $kver, initramfs $(du -m "$cpio_file" | cut -f1) MiB, mode $mode"

# --- boot ---------------------------------------------------------------------------------------
qemu=(qemu-system-x86_64 -accel tcg -cpu max -smp "${VM_SMP:-2}" -m "${VM_MEM:-2048}"
  -nographic -nic none -no-reboot
  -kernel "$vmlinuz" -initrd "$cpio_file"
  -append "console=ttyS0 rdinit=/init panic=-1 quiet loglevel=3")
if [ "$mode" = shell ]; then
  "${qemu[@]}"
  exit
fi
set +e
# The console's carriage returns and terminal resets would garble logs; drop them.
timeout --foreground "$timeout_s" "${qemu[@]}" </dev/null 2>&1 |
  sed -u -e 's/\r//g' -e 's/\x1bc//g' -e 's/\x1b\[[0-9;?]*[a-zA-Z]//g' | tee "$log"
qemu_rc=${PIPESTATUS[0]}
set -e
result="$(grep -a -o 'NANOKUBE-VM-RESULT exit=[0-9]*' "$log" | tail -n1 | cut -d= -f2 || true)"
if [ -z "$result" ]; then
  if [ "$qemu_rc" = 124 ]; then echo "vm-test: FAILED: timed out after ${timeout_s}s (log: $log)" >&2
  else echo "vm-test: FAILED: the VM stopped without a result (qemu exit $qemu_rc; log: $log)" >&2; fi
  exit 1
fi
if [ "$result" != 0 ]; then echo "vm-test: FAILED: the job exited $result (log: $log)" >&2; exit "$result"; fi
echo "vm-test: passed"
