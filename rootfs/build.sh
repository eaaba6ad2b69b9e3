#!/usr/bin/env bash
# Builds the default image nanokube/busybox:latest and the probe, from Debian's busybox-static and
# rootfs/probe (no download beyond Debian packages and crates). Outputs, under rootfs/out/:
#   probe                    the static probe binary
#   rootfs/                  the unpacked image (busybox + applet links, /etc/passwd, /bin/probe)
#   nanokube-busybox.oci.tar the same image as an OCI image archive
# Idempotent and quick when nothing changed. See docs/rootfs-and-probe.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/out"
ref="nanokube/busybox:latest"
busybox=/bin/busybox

# ldd fails on a static executable ("not a dynamic executable"): the image has no libraries.
if [ ! -x "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
  echo "rootfs/build.sh: $busybox is missing or not static; install busybox-static (scripts/deps.sh)" >&2
  exit 1
fi

# The probe: static so that it runs in any root filesystem (relocation-model=static makes it a
# plain static executable rather than static-pie, which `file` and old loaders both accept).
(
  cd "$here/probe"
  RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
    cargo build --quiet --release --locked --target x86_64-unknown-linux-gnu --target-dir "$here/probe/target"
)
probe_bin="$here/probe/target/x86_64-unknown-linux-gnu/release/probe"
mkdir -p "$out"

# Up to date when every input is unchanged and every output exists.
stamp="$(cat "$0" "$here/oci_archive.py" "$busybox" "$probe_bin" | sha256sum | cut -d' ' -f1)"
if [ -f "$out/.stamp" ] && [ "$(cat "$out/.stamp")" = "$stamp" ] &&
  [ -x "$out/probe" ] && [ -x "$out/rootfs/bin/probe" ] && [ -f "$out/nanokube-busybox.oci.tar" ]; then
  echo "rootfs: up to date ($out)"
  exit 0
fi
rm -f "$out/.stamp"

install -m 0755 "$probe_bin" "$out/probe.tmp" && mv -f "$out/probe.tmp" "$out/probe"

# The root filesystem, built beside the old one and swapped in whole.
new="$out/rootfs.new"
rm -rf "$new"
mkdir -p "$new"
(
  cd "$new"
  install -d -m 0755 bin etc root dev proc sys usr usr/bin usr/sbin sbin var
  install -d -m 1777 tmp
  install -m 0755 "$busybox" bin/busybox
  install -m 0755 "$out/probe" bin/probe
  # Every applet as a relative link in /bin, so PATH=/bin finds sh, ls, cat, sleep, ...
  for applet in $("$busybox" --list); do
    case "$applet" in busybox) continue ;; esac
    ln -s busybox "bin/$applet"
  done
  printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >etc/passwd
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' >etc/group
  chmod 0644 etc/passwd etc/group
  chmod 0700 root
)
python3 "$here/oci_archive.py" "$new" "$out/nanokube-busybox.oci.tar" "$ref"
rm -rf "$out/rootfs.old"
if [ -d "$out/rootfs" ]; then mv "$out/rootfs" "$out/rootfs.old"; fi
mv "$new" "$out/rootfs"
rm -rf "$out/rootfs.old"
echo "$stamp" >"$out/.stamp"
echo "rootfs: built $out/rootfs, $out/probe, $out/nanokube-busybox.oci.tar"
