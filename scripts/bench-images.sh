#!/usr/bin/env bash
# Image pull benchmark: pull + unpack of a multi-layer image from a local registry on loopback,
# `nanokube image pull` against `skopeo copy` to an OCI directory followed by `umoci unpack`,
# side by side in one run. Prints each run's time, the medians and the ratio (target <= 1.0x).
#
#   sudo ./scripts/bench-images.sh [RUNS]        (default 5 runs each, alternating)
#
# Needs root (unpacking preserves ownership and creates device nodes), docker-registry, skopeo,
# umoci (scripts/deps.sh installs them). Builds the release binary if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
if [ "$(id -u)" != 0 ]; then echo "bench-images.sh: run as root" >&2; exit 1; fi
for tool in docker-registry skopeo umoci python3; do
  command -v "$tool" >/dev/null || { echo "bench-images.sh: $tool is required (scripts/deps.sh)" >&2; exit 1; }
done

cargo build --release --quiet --bin nanokube
nanokube=$PWD/target/release/nanokube

work=$(mktemp -d /var/tmp/nanokube-bench-images.XXXXXX)
registry_pid=
cleanup() {
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# A free loopback port, found by the kernel.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
YAML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

# The image: 6 layers of mixed files (text-like and random, small and large), ~60 MB
# uncompressed, each added by umoci as a gzip layer.
layout=$work/layout
umoci init --layout "$layout"
umoci new --image "$layout:bench"
for layer in 1 2 3 4 5 6; do
  src=$work/src$layer
  mkdir -p "$src/usr/lib/l$layer" "$src/usr/share/doc/l$layer" "$src/etc/l$layer"
  for i in $(seq 150); do
    # Text-like: base64 of random bytes compresses about 25%; real files vary the same way.
    head -c $(( (i * 977) % 24000 + 200 )) /dev/urandom | base64 >"$src/usr/share/doc/l$layer/f$i.txt"
  done
  for i in $(seq 20); do
    head -c $(( (i * 31337) % 200000 + 1000 )) /dev/urandom >"$src/usr/lib/l$layer/lib$i.so"
  done
  head -c 4000000 /dev/zero | tr '\0' 'x' >"$src/etc/l$layer/padding"
  ln -s "../lib/l$layer/lib1.so" "$src/usr/share/doc/l$layer/link"
  umoci insert --image "$layout:bench" "$src" / >/dev/null
done
skopeo copy --quiet --preserve-digests --dest-tls-verify=false \
  "oci:$layout:bench" "docker://127.0.0.1:$port/bench/image:v1"
ref=127.0.0.1:$port/bench/image:v1
size=$(du -sb "$work/registry" | cut -f1)
echo "image: $ref, 6 layers, $(( size / 1000000 )) MB in the registry"

now() { date +%s.%N; }
nk_times=()
peer_times=()
for run in $(seq "$runs"); do
  t0=$(now)
  "$nanokube" image --data-dir "$work/nk$run" --registries-config "$work/none.yaml" pull --quiet "$ref" >/dev/null
  t1=$(now)
  skopeo copy --quiet --src-tls-verify=false "docker://$ref" "oci:$work/sk$run:v1"
  umoci unpack --image "$work/sk$run:v1" "$work/bundle$run" >/dev/null
  t2=$(now)
  nk=$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')
  peer=$(awk -v a="$t1" -v b="$t2" 'BEGIN {print b - a}')
  nk_times+=("$nk")
  peer_times+=("$peer")
  printf 'run %d: nanokube pull %.3fs   skopeo copy + umoci unpack %.3fs\n' "$run" "$nk" "$peer"
  # Results must match: same files in the merged view of nanokube's lower dirs and umoci's rootfs.
  if [ "$run" = 1 ]; then
    a=$(find "$work/nk1/agent/images/snapshots" -path '*/fs/*' -type f | wc -l)
    b=$(find "$work/bundle1/rootfs" -type f | wc -l)
    [ "$a" = "$b" ] || { echo "file counts differ: nanokube $a, umoci $b" >&2; exit 1; }
  fi
  rm -rf "$work/nk$run" "$work/sk$run" "$work/bundle$run"
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
nk_med=$(median "${nk_times[@]}")
peer_med=$(median "${peer_times[@]}")
ratio=$(awk -v a="$nk_med" -v b="$peer_med" 'BEGIN {print a / b}')
printf 'median: nanokube %.3fs, skopeo+umoci %.3fs, ratio %.2fx (target <= 1.0x)\n' "$nk_med" "$peer_med" "$ratio"
