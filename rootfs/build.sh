#!/usr/bin/env bash
# Builds the default image nanokube/busybox:latest and the probe, from Debian's busybox-static and
# rootfs/probe (no download beyond Debian packages and crates). Outputs, under rootfs/out/:
#   probe                    the static probe binary
#   rootfs/                  the unpacked image (busybox + applet links, /etc/passwd, /bin/probe)
#   nanokube-busybox.oci.tar the same image as an OCI image archive
# Idempotent and quick when nothing changed. See docs/rootfs-and-probe.md.
#
# usage: rootfs/build.sh [--check]   --check also verifies the outputs with skopeo, umoci and chroot
set -euo pipefail
check=0
case "${1:-}" in --check) check=1 ;; "") ;; *) echo "usage: rootfs/build.sh [--check]" >&2; exit 2 ;; esac
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
  up_to_date=1
else
  up_to_date=0
fi
if [ "$up_to_date" = 0 ]; then
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
    # Present so that a read-only root can still take the bind mounts a kubelet puts over them.
    printf '%s\n' '127.0.0.1 localhost' '::1 localhost ip6-localhost ip6-loopback' >etc/hosts
    : >etc/resolv.conf
    : >etc/hostname
    chmod 0644 etc/passwd etc/group etc/hosts etc/resolv.conf etc/hostname
    chmod 0700 root
  )
  python3 "$here/oci_archive.py" "$new" "$out/nanokube-busybox.oci.tar" "$ref"
  rm -rf "$out/rootfs.old"
  if [ -d "$out/rootfs" ]; then mv "$out/rootfs" "$out/rootfs.old"; fi
  mv "$new" "$out/rootfs"
  rm -rf "$out/rootfs.old"
  echo "$stamp" >"$out/.stamp"
  echo "rootfs: built $out/rootfs, $out/probe, $out/nanokube-busybox.oci.tar"
fi

# Reads the archive back the ways its consumers will: skopeo by ref name, umoci unpacking it,
# and the unpacked probe running in a bare chroot.
if [ "$check" = 1 ]; then
  (
    cd "$here/probe"
    RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
      cargo test --quiet --release --locked --target x86_64-unknown-linux-gnu --target-dir "$here/probe/target" >/dev/null
  )
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  archive="oci-archive:$out/nanokube-busybox.oci.tar:$ref"
  skopeo inspect "$archive" | python3 -c '
import json, sys
i = json.load(sys.stdin)
assert i["Architecture"] == "amd64" and i["Os"] == "linux" and len(i["Layers"]) == 1, i
assert any(e.startswith("PATH=") for e in i["Env"]), i' 
  skopeo copy --quiet "$archive" "oci:$tmp/layout:latest"
  umoci unpack --image "$tmp/layout:latest" "$tmp/bundle" >/dev/null
  diff -r --no-dereference "$out/rootfs" "$tmp/bundle/rootfs"
  python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["process"]["args"] == ["sh"]' "$tmp/bundle/config.json"
  mkdir "$tmp/empty" && cp "$out/probe" "$tmp/empty/probe"
  [ "$(chroot "$tmp/empty" /probe cwd)" = "/ inside" ]
  [ "$(chroot "$out/rootfs" /bin/sh -c 'echo $(id -un):$(probe exit 0 && echo ok)')" = "root:ok" ]
  echo "rootfs: check passed (probe unit tests, skopeo inspect/copy by ref name, umoci unpack equals rootfs/, probe static)"
fi
