# Shared by the benchmark scripts: fetch real data (Debian's linux-source
# packages, two versions of one kernel tree), install restic, time commands.
set -euo pipefail
BENCH_DIR=${BENCH_DIR:-/var/tmp/klosetfs-bench}
# Two consecutive versions of one kernel tree. The archive only keeps recent
# ones, so unless V1/V2 are given, take the two newest it offers.
if [ -z "${V1:-}" ] || [ -z "${V2:-}" ]; then
  # Stale package lists name versions the mirror no longer has: refresh first.
  if [ "$(id -u)" = 0 ]; then apt-get update -qq >/dev/null 2>&1 || true; fi
  mapfile -t _vers < <(apt-cache madison linux-source-6.1 2>/dev/null | awk '{print $3}' | sort -uV | tail -2)
  V1=${V1:-${_vers[0]:-6.1.170-3}}
  V2=${V2:-${_vers[1]:-6.1.172-1}}
fi
mkdir -p "$BENCH_DIR"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
K="$ROOT/target/release/klosetfs"
export KLOSETFS_PASSPHRASE=bench-pass RESTIC_PASSWORD=bench-pass

need_tools() {
  local missing=()
  command -v restic >/dev/null || missing+=(restic)
  [ -x /usr/bin/time ] || missing+=(time)
  command -v rsync >/dev/null || missing+=(rsync)
  command -v fusermount3 >/dev/null || missing+=(fuse3)
  command -v xz >/dev/null || missing+=(xz-utils)
  command -v bindfs >/dev/null || missing+=(bindfs)
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  [ -n "${SKIP_BUILD:-}" ] || (cd "$ROOT" && cargo build --release --locked -q && cargo build --release --locked -q --example memfs)
}

# kernel_tree VERSION -> prints the unpacked tree's path
kernel_tree() {
  local v=$1 d="$BENCH_DIR/linux-$1"
  if [ ! -d "$d/tree" ]; then
    mkdir -p "$d"
    # A version the archive no longer has must stop the run, not leave an
    # empty tree that this and later runs would time as a kernel tree.
    if ! (cd "$d" && apt-get download -qq "linux-source-6.1=$v" >/dev/null && dpkg-deb -x linux-source-6.1_*.deb pkg); then
      echo "linux-source-6.1=$v cannot be downloaded; pick versions with: apt-cache madison linux-source-6.1" >&2
      return 1
    fi
    mkdir -p "$d/tree.part"
    tar -C "$d/tree.part" -xJf "$d"/pkg/usr/src/linux-source-6.1.tar.xz || return 1
    mv "$d/tree.part" "$d/tree"
    rm -rf "$d/pkg/usr/src/linux-config"* 
  fi
  echo "$d/tree"
}

# kernel_tarball VERSION -> path of the uncompressed .tar (a ~1.4 GB real file)
kernel_tarball() {
  local v=$1 d="$BENCH_DIR/linux-$1"
  kernel_tree "$v" >/dev/null
  if [ ! -f "$d/linux.tar" ]; then
    xz -dc "$d"/pkg/usr/src/linux-source-6.1.tar.xz > "$d/linux.tar"
  fi
  echo "$d/linux.tar"
}

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }

# timed NAME CMD... : runs CMD, records "NAME seconds maxrss_kib" in $RESULTS
timed() {
  local name=$1; shift
  local t; t=$(mktemp)
  /usr/bin/time -f "%e %M" -o "$t" "$@" >/dev/null
  echo "$name $(cat "$t")" | tee -a "$RESULTS"
  rm -f "$t"
}

# result NAME -> seconds
secs() { awk -v n="$1" '$1==n {print $2}' "$RESULTS" | tail -1; }
rss() { awk -v n="$1" '$1==n {print $3}' "$RESULTS" | tail -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# FUSE requests the kernel sends while CMD runs, by opcode, from the
# `fuse:fuse_request_send` tracepoint: fuse_requests OUT CMD... writes
# "OPCODE COUNT" lines to OUT (empty when tracefs is not available).
fuse_requests() {
  local out=$1; shift
  local tr=/sys/kernel/tracing
  [ -d "$tr/events/fuse" ] || mount -t tracefs nodev "$tr" 2>/dev/null || true
  if [ ! -w "$tr/events/fuse/fuse_request_send/enable" ]; then
    : > "$out"; "$@"; return
  fi
  echo 0 > "$tr/tracing_on"; : > "$tr/trace"
  echo 65536 > "$tr/buffer_size_kb"
  echo 1 > "$tr/events/fuse/fuse_request_send/enable"
  # Read the buffer as it fills (a large copy outgrows any buffer).
  cat "$tr/trace_pipe" > "$out.raw" & local reader=$!
  echo 1 > "$tr/tracing_on"
  "$@"; local rc=$?
  echo 0 > "$tr/tracing_on"
  echo 0 > "$tr/events/fuse/fuse_request_send/enable"
  sleep 0.5; kill "$reader" 2>/dev/null; wait "$reader" 2>/dev/null || true
  grep -o '(FUSE_[A-Z0-9_]*)' "$out.raw" | tr -d '()' | sort | uniq -c | awk '{print $2, $1}' > "$out"
  rm -f "$out.raw"
  return $rc
}

# per_file OUT FILES -> requests per file from a fuse_requests output
per_file() { awk -v n="$2" '{ s += $2 } END { if (n > 0) printf "%.2f", s / n; else print "n/a" }' "$1"; }

# The FUSE floor binary: a minimal in-memory filesystem (examples/memfs.rs).
MEMFS="$ROOT/target/release/examples/memfs"

# The machine facts that move FUSE and wakeup costs, for every table.
# "on" when a virtio balloon reports free pages to the host: memory the guest
# freed (drop_caches, exited processes) is handed back, and touching it again
# costs a host fault per page. Page-cache-heavy paths (reads through FUSE,
# which fill a second page cache) pay it more than a plain disk copy.
page_reporting() {
  local d f
  for d in /sys/bus/virtio/devices/*; do
    [ "$(cat "$d/device" 2>/dev/null)" = 0x0005 ] || continue
    f=$(cat "$d/features" 2>/dev/null)
    if [ "${f:5:1}" = 1 ]; then echo on; return; fi
  done
  echo off
}

machine_facts() {
  echo "Machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), kernel $(uname -r), cpuidle $(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null || echo n/a), guest_halt_poll_ns $(cat /sys/module/haltpoll/parameters/guest_halt_poll_ns 2>/dev/null || echo n/a), free page reporting $(page_reporting), disk under $BENCH_DIR: $(df --output=source "$BENCH_DIR" | tail -1); klosetfs $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'); $(date -u +%F)"
}
