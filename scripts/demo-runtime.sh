#!/usr/bin/env bash
# The runtime on its own: installs what is missing, builds nanokube and the default
# image nanokube/busybox, then runs one container from it with `nanokube runtime run` and shows
# what isolation looks like from inside: its hostname, that it is pid 1, its namespaces against
# the host's, capabilities, seccomp, no_new_privs. Cleans up after itself. Needs root.
#
# usage: sudo ./scripts/demo-runtime.sh
set -euo pipefail
crate="$(cd "$(dirname "$0")/.." && pwd)"
cd "$crate"
if [ "$(id -u)" != 0 ]; then echo "demo-runtime.sh: run as root" >&2; exit 1; fi

./scripts/deps.sh
. scripts/env.sh
echo "== building nanokube (release) and the default image"
cargo build --locked --release --bin nanokube
./rootfs/build.sh
nanokube="$crate/target/release/nanokube"

bundle="$(mktemp -d /tmp/nanokube-quickstart.XXXXXX)"
state="$bundle/state"
id="quickstart-$$"
cleanup() {
  "$nanokube" runtime --root "$state" delete --force "$id" >/dev/null 2>&1 || true
  rm -rf "$bundle"
}
trap cleanup EXIT

# An OCI runtime spec written out in full, so that it shows what a container is made of:
# its own namespaces, the kernel filesystems it sees, a read-only image as its root.
python3 - "$bundle/config.json" "$crate/rootfs/out/rootfs" <<'PY'
import json, sys
path, root = sys.argv[1:]
caps = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
        "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
script = ('echo "hostname: $(hostname)"; echo "my pid: $$"; '
          'echo "every process I can see:"; ps -o pid,user,comm; '
          'echo "mount a tmpfs: $(probe syscall mount-tmpfs)"; '
          'echo "reboot the machine: $(probe syscall reboot)"; '
          'echo "write to the image: $(probe write /bin/hello)"; '
          'exec probe report')
spec = {
    "ociVersion": "1.0.2",
    "root": {"path": root, "readonly": True},
    "hostname": "quickstart",
    "process": {
        "terminal": False, "cwd": "/", "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", script],
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"],
        "noNewPrivileges": True,
        "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}],
    },
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]},
    ],
    "linux": {
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")],
        "resources": {"memory": {"limit": 64 * 1024 * 1024}, "pids": {"limit": 64}},
        "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    },
}
json.dump(spec, open(path, "w"), indent=2)
PY

echo "== nanokube runtime run $id (bundle $bundle)"
out="$bundle/output"
# The built-in seccomp profile (like Docker's default) when this build has it.
seccomp=()
if "$nanokube" runtime run --help | grep -q -- --default-seccomp; then seccomp=(--default-seccomp); fi
"$nanokube" runtime --root "$state" run "${seccomp[@]}" --bundle "$bundle" "$id" >"$out"
grep -v '^{' "$out"
python3 - "$out" <<'PY'
import json, os, sys
report = json.loads(next(l for l in open(sys.argv[1]) if l.startswith("{")))
print(f"probe report from inside: pid {report['pid']}, uid {report['uid']}, "
      f"hostname {report['hostname']!r}")
for ns, link in report["ns"].items():
    host = os.readlink(f"/proc/self/ns/{ns}") if os.path.exists(f"/proc/self/ns/{ns}") else None
    if link is None:
        continue
    print(f"  {ns:<7} {link:<22} {'own namespace' if link != host else 'shared with the host'}")
print(f"  capabilities (effective): {report['caps']['effective']} "
      f"(the host root has {open('/proc/self/status').read().split('CapEff:')[1].split()[0]})")
print(f"  no_new_privs: {report['no_new_privs']}, seccomp mode: {report['seccomp']}, "
      f"open fds: {[f['fd'] for f in report['fds']]}")
print(f"  memory limit: {report['cgroup']['memory_max']}, pids limit: {report['cgroup']['pids_max']}")
print(f"  root filesystem: {next(m['fstype'] + ' ' + m['options'] for m in report['mounts'] if m['mountpoint'] == '/')}")
PY
echo "== done; the container and its state were deleted"
