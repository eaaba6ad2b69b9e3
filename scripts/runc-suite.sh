#!/usr/bin/env bash
# Measures `nanokube runtime` with runc's own integration suite (the bats files under
# tests/integration of a runc source checkout, which stays outside this repository): each file runs
# once with RUNC=runc and once with RUNC=<a link named nanokube-runc to the nanokube binary>, under
# a pseudo-terminal as runc's CI runs them. Prints both pass counts and the tests that runc passes
# but nanokube does not, with the failure output of each in OUT/nanokube.tap. Results are kept per
# file (OUT/LABEL/FILE.tap), so a run of some files (or --only one runtime) updates just those.
#
# usage: sudo scripts/runc-suite.sh RUNC_SRC [--only runc|nanokube] [--out DIR] [FILE.bats ...]
#   RUNC_SRC   a runc checkout (the tag matching the runc binary used, e.g. v1.1.5 for Debian 12)
#   FILE.bats  run only these files (names under tests/integration); default: all of them
# env: RUNC (default: runc from PATH), NANOKUBE (default: target/debug/nanokube, built if missing),
#      TEST_TIMEOUT seconds per test (default 120; files whose tests use a bare `wait` get a
#      per-file limit of 10 minutes instead, as bats' per-test watchdog is a job they would wait
#      for), OUT (default /tmp/runc-suite)
#
# The suite wants a busybox and a Debian image tarball in its testdata; they are made here, from
# Debian's busybox-static and from this host's glibc programs, never downloaded. Its Go helpers
# (contrib/cmd/recvtty, sd-helper, seccompagent) are built with `go` (Debian's golang-go, the
# checkout's vendor tree, offline) when missing; if that fails the script names the tests that need
# them (they then fail for both runtimes).
set -euo pipefail
crate="$(cd "$(dirname "$0")/.." && pwd)"
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "runc-suite.sh: run as root" >&2; exit 1; }

src="" only="" files=()
out="${OUT:-/tmp/runc-suite}"
while [ $# -gt 0 ]; do
  case "$1" in
    --only) only="${2:?}"; shift 2 ;;
    --out) out="${2:?}"; shift 2 ;;
    -h|--help) usage ;;
    -*) usage ;;
    *) if [ -z "$src" ]; then src="$1"; else files+=("$1"); fi; shift ;;
  esac
done
[ -n "$src" ] || usage
suite="$(cd "$src" && pwd)/tests/integration"
[ -f "$suite/helpers.bash" ] || { echo "runc-suite.sh: $suite/helpers.bash not found: is $src a runc checkout?" >&2; exit 1; }
for tool in bats jq script gcc gawk; do
  command -v "$tool" >/dev/null || { echo "runc-suite.sh: $tool is missing (apt-get install bats jq bsdutils gcc gawk)" >&2; exit 1; }
done
runc_bin="$(command -v "${RUNC:-runc}")"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# get-images.sh names the tarballs by Go's architecture name and asks `go env` for it; without Go
# a stand-in answers that one question.
case "$(uname -m)" in x86_64) goarch=amd64 ;; aarch64) goarch=arm64 ;; *) goarch="$(uname -m)" ;; esac
shim="$out/shim"
mkdir -p "$shim"
if ! command -v go >/dev/null; then
  printf '#!/bin/sh\n[ "$1 $2" = "env GOARCH" ] && { echo %s; exit 0; }\necho "go stand-in: only go env GOARCH" >&2; exit 1\n' "$goarch" >"$shim/go"
  chmod +x "$shim/go"
fi

make_busybox() { # $1: tarball to write
  local bb=/bin/busybox dir
  if [ ! -x "$bb" ] || ldd "$bb" >/dev/null 2>&1; then
    echo "runc-suite.sh: $bb is missing or not static (apt-get install busybox-static)" >&2; exit 1
  fi
  dir="$(mktemp -d "$out/img.XXXXXX")"
  chmod 0755 "$dir" # the image's / as unpacked; some tests run as a non-root user
  (
    cd "$dir"
    install -d -m 0755 bin dev etc home proc root sys usr/bin usr/sbin var/spool/mail var/www
    install -d -m 1777 tmp
    install -m 0755 "$bb" bin/busybox
    for applet in $("$bb" --list); do [ "$applet" = busybox ] || ln -sf busybox "bin/$applet"; done
    cat >etc/passwd <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
EOF
    cat >etc/group <<'EOF'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
mail:x:8:
kmem:x:9:
wheel:x:10:root
audio:x:29:
www-data:x:33:
operator:x:37:
users:x:100:
nogroup:x:65533:
nobody:x:65534:
EOF
  )
  tar -C "$dir" -cJf "$1.tmp" . && mv "$1.tmp" "$1"
  rm -rf "$dir"
}

make_debian() { # $1: tarball to write; a glibc userland with what the suite runs in it
  local dir prog lib
  dir="$(mktemp -d "$out/img.XXXXXX")"
  chmod 0755 "$dir"
  install -d -m 0755 "$dir"/{bin,sbin,etc,dev,proc,sys,root,lib,lib64,usr/bin,usr/lib,var}
  install -d -m 1777 "$dir/tmp"
  for prog in sh dash cat ls touch mount umount grep id sleep ldconfig; do
    prog="$(command -v "$prog")"
    # Debian merges /bin into /usr/bin; the image keeps both names working.
    install -m 0755 "$(readlink -f "$prog")" "$dir/bin/$(basename "$prog")"
    for lib in $(ldd "$prog" 2>/dev/null | grep -o '/[^ ]*' || true); do
      install -D -m 0755 "$(readlink -f "$lib")" "$dir$lib"
    done
  done
  ln -s ../bin/ldconfig "$dir/sbin/ldconfig"
  printf 'include /etc/ld.so.conf.d/*.conf\n' >"$dir/etc/ld.so.conf"
  mkdir -p "$dir/etc/ld.so.conf.d"
  printf '/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n' >"$dir/etc/ld.so.conf.d/x86_64-linux-gnu.conf"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$dir/etc/passwd"
  printf 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n' >"$dir/etc/group"
  tar -C "$dir" -cJf "$1.tmp" . && mv "$1.tmp" "$1"
  rm -rf "$dir"
}

[ -f "$suite/testdata/busybox-$goarch.tar.xz" ] || make_busybox "$suite/testdata/busybox-$goarch.tar.xz"
[ -f "$suite/testdata/debian-$goarch.tar.xz" ] || make_debian "$suite/testdata/debian-$goarch.tar.xz"

helpers="$(cd "$src/contrib/cmd" && pwd -P)"
# The Go helpers are built from the checkout's vendor tree (Debian's golang-go is enough; offline).
missing_helpers=()
for helper in recvtty sd-helper seccompagent; do
  [ -x "$src/contrib/cmd/$helper/$helper" ] && continue
  if command -v go >/dev/null && [ -d "$src/vendor" ]; then
    echo "runc-suite.sh: building $helper" >&2
    (cd "$src" && GOFLAGS=-mod=vendor GOPROXY=off GOCACHE="$out/gocache" \
      go build -trimpath -tags seccomp -o "contrib/cmd/$helper/$helper" "./contrib/cmd/$helper") >&2 || true
  fi
  [ -x "$src/contrib/cmd/$helper/$helper" ] || missing_helpers+=("$helper")
done
for helper in "${missing_helpers[@]}"; do
  case "$helper" in
    recvtty) uses="tty.bats, create.bats and exec.bats tests with --console-socket, and start_detached/run with a terminal" ;;
    sd-helper) uses="the systemd cgroup tests of cgroups.bats" ;;
    seccompagent) uses="seccomp-notify.bats" ;;
  esac
  echo "runc-suite.sh: note: $helper could not be built (needs go, libseccomp-dev for seccompagent); the tests using it fail under both runtimes: $uses" >&2
done

# One copy of the binary for the whole run (the shared target dir is rebuilt under us), called
# through a link named as the runtime so that it acts as `nanokube runtime`.
nk_src="${NANOKUBE:-$crate/target/debug/nanokube}"
if [ -z "${NANOKUBE:-}" ] && [ ! -x "$nk_src" ]; then
  (cd "$crate" && . scripts/env.sh && cargo build --quiet --bin nanokube)
fi
mkdir -p "$out/bin"
install -m 0755 "$nk_src" "$out/bin/nanokube"
ln -sf nanokube "$out/bin/nanokube-runc"

if [ ${#files[@]} -eq 0 ]; then
  for f in "$suite"/*.bats; do files+=("$(basename "$f")"); done
fi

# Containers the suite leaves behind when a runtime fails its teardown. Their root cannot be told
# from outside (a pivoted root reads as "/"), so they are found by cgroup: the suite's container
# names (test_*, ct1...) at a hierarchy's top or under nanokube's default parent /nanokube, and the
# suite's runc-cgroups-integration-test parent. Frozen ones are thawed first, or SIGKILL would wait.
cleanup_leftovers() { # $1: temp dir of the run
  local p root m d
  for p in /proc/[0-9]*; do
    root="$(readlink "$p/root" 2>/dev/null || true)"
    case "$root" in "$1"/*) kill -9 "${p#/proc/}" 2>/dev/null || true ;; esac
  done
  for d in $(find /sys/fs/cgroup -maxdepth 4 -type d \( -path '*/runc-cgroups-integration-test' -o -regextype egrep \
    -regex '/sys/fs/cgroup(/[^/]+)?(/nanokube)?/(test[_a-z0-9]*|testbusyboxdelete|ct[0-9]+)' \) 2>/dev/null); do
    find "$d" -name freezer.state -exec sh -c 'echo THAWED >"$1"' _ {} \; 2>/dev/null || true
    find "$d" -name cgroup.freeze -exec sh -c 'echo 0 >"$1"' _ {} \; 2>/dev/null || true
    for p in $(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
  done
  sleep 0.2
  for m in $(awk -v d="$1/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  find /sys/fs/cgroup -depth -type d \( -path '*/runc-cgroups-integration-test*' -o -regextype egrep \
    -regex '/sys/fs/cgroup(/[^/]+)?(/nanokube)?/(test[_a-z0-9]*|testbusyboxdelete|ct[0-9]+)' \) -exec rmdir {} \; 2>/dev/null || true
}

# A runtime command that hangs (e.g. blocked on a frozen container), or a helper (recvtty) that a
# failed test never stopped, holds the pipe of bats' `run` or of the test open, and bats then waits
# past its own per-test timeout; such a process is killed once it is older than the per-test
# limit, and named in OUT/LABEL/hung.log.
watchdog() { # $1: temp dir of the run, $2: the runtime's executable, $3: log
  local limit=$((${TEST_TIMEOUT:-120} + 30)) hz p age up
  hz="$(getconf CLK_TCK)"
  while sleep 10; do
    for p in $(grep -lsF -- "$1/" /proc/[0-9]*/cmdline | cut -d/ -f3); do
      case "$(readlink "/proc/$p/exe" 2>/dev/null)" in "$2" | "$helpers"/*/*) ;; *) continue ;; esac
      up="$(cut -d' ' -f1 /proc/uptime)"
      age="$(awk -v hz="$hz" -v up="$up" '{sub(/^.*\) /, ""); print int(up - $20 / hz)}' "/proc/$p/stat" 2>/dev/null)" || continue
      [ -n "$age" ] && [ "$age" -gt "$limit" ] || continue
      echo "$(date +%T) killed after ${age}s: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)" >>"$3"
      kill -9 "$p" 2>/dev/null || true
    done
  done
}

run_suite() { # $1: label, $2: runtime path
  local label="$1" bin="$2" f tmp limit exe wd
  mkdir -p "$out/$label"
  exe="$(readlink -f "$bin")"
  for f in "${files[@]}"; do
    tmp="$(mktemp -d "$out/tmp-$label.XXXXXX")"
    chmod 0755 "$tmp" # the suite runs some containers as a non-root user
    echo "== $label: $f" >&2
    watchdog "$tmp" "$exe" "$out/$label/hung.log" &
    wd=$!
    # script(1) gives the tests a terminal, as runc's CI does.
    limit=(env BATS_TEST_TIMEOUT="${TEST_TIMEOUT:-120}" timeout -k 10 1800)
    if grep -qE '^[[:space:]]*wait[[:space:]]*(#|$)' "$suite/$f"; then limit=(env -u BATS_TEST_TIMEOUT timeout -k 10 600); fi
    # No traffic leaves the machine: "spec validator" would clone runtime-spec from GitHub and
    # `go get` a module; git and go are told to refuse instead (the test fails for both runtimes).
    TMPDIR="$tmp" RUNC="$bin" PATH="$shim:$PATH" GIT_ALLOW_PROTOCOL=file GOPROXY=off \
      "${limit[@]}" script -qec "bats --tap '$suite/$f' >'$tmp/tap' 2>&1" /dev/null </dev/null >/dev/null 2>&1 || true
    kill "$wd" 2>/dev/null || true
    wait "$wd" 2>/dev/null || true
    sed "s|^\(not \)\{0,1\}ok [0-9]* |&$f: |" "$tmp/tap" >"$out/$label/$f.tap"
    cleanup_leftovers "$tmp"
    rm -rf "$tmp"
  done
}

# Results as "STATUS<tab>file: name", STATUS one of pass, skip, fail.
results() {
  sed -n 's/^ok [0-9]* \(.*\) # skip.*/skip\t\1/p; t; s/^ok [0-9]* \(.*\)/pass\t\1/p; s/^not ok [0-9]* \(.*\)/fail\t\1/p' "$1" |
    sed 's/ in [0-9]*ms$//' | sort -t"$(printf '\t')" -k2
}

# With --only, the other runtime's results are those of an earlier run, if any.
[ "$only" = nanokube ] || run_suite runc "$runc_bin"
[ "$only" = runc ] || run_suite nanokube "$out/bin/nanokube-runc"

for label in runc nanokube; do
  ls "$out/$label"/*.tap >/dev/null 2>&1 || continue
  cat "$out/$label"/*.tap >"$out/$label.tap"
  results "$out/$label.tap" >"$out/$label.results"
done
# A test with no result line at all (bats lost it, e.g. when a hung command was killed in its
# teardown) counts as failed; the list names it.
cat "$out"/*.results 2>/dev/null | cut -f2 | sort -u >"$out/all"
for label in runc nanokube; do
  [ -f "$out/$label.results" ] || continue
  cut -f2 "$out/$label.results" | sort | comm -23 "$out/all" - >"$out/$label.noresult"
  printf '%-9s %s passed, %s failed, %s skipped (of %s)\n' "$label:" \
    "$(grep -c '^pass' "$out/$label.results" || true)" \
    "$(($(grep -c '^fail' "$out/$label.results" || true) + $(wc -l <"$out/$label.noresult")))" \
    "$(grep -c '^skip' "$out/$label.results" || true)" "$(wc -l <"$out/all")"
done
if [ -f "$out/runc.results" ] && [ -f "$out/nanokube.results" ]; then
  grep '^pass' "$out/runc.results" | cut -f2 | sort >"$out/runc.pass"
  grep '^pass' "$out/nanokube.results" | cut -f2 | sort >"$out/nanokube.pass"
  comm -23 "$out/runc.pass" "$out/nanokube.pass" >"$out/gap"
  echo "runc passes, nanokube does not ($(wc -l <"$out/gap")):"
  while IFS= read -r t; do
    if grep -qxF -- "$t" "$out/nanokube.noresult"; then echo "  $t (no result)"; else echo "  $t"; fi
  done <"$out/gap"
  extra="$(comm -13 "$out/runc.pass" "$out/nanokube.pass")"
  [ -z "$extra" ] || { echo "nanokube passes, runc does not:"; echo "$extra" | sed 's/^/  /'; }
  echo "failure output: $out/nanokube.tap; killed hung commands: $out/nanokube/hung.log"
fi
