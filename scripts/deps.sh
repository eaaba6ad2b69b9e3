#!/usr/bin/env bash
# Installs every system package the tests, benchmarks and quickstart use. Safe to run again.
set -euo pipefail
packages=(
  build-essential libc6-dev pkg-config   # linker, bundled SQLite, ring, zstd, the static probe
  curl procps      # API tests' raw requests; `runtime ps` runs ps
  busybox-static   # the default image's content, and the VM's userland
  runc crun        # peers for the runtime's behaviour tests and benchmark
  containerd podman   # the real clients that drive the runtime as their runc (tests/containerd.rs, podman.rs)
  nftables iptables
  etcd-server      # the etcd store backend's tests; the API benchmark's peer
  docker-registry skopeo umoci   # a local registry on loopback; image benchmark peers
  qemu-system-x86 linux-image-cloud-amd64 cpio   # the cgroup v2 VM
  protobuf-compiler libprotobuf-dev   # etcd-client's build compiles its protos (needs the well-known types)
  python3 binutils kmod   # rootfs/build.sh's OCI archive writer; vm-test.sh strips binaries, lists modules
  iproute2 util-linux   # node tests put each cluster in a network namespace (ip netns, nsenter)
  python3-yaml     # bench-pods.sh's measuring client reads the kubeconfig
  python3-kubernetes   # the Python client, run inside a pod from the host's /usr (tests/satokens.rs)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
