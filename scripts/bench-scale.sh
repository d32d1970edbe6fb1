#!/usr/bin/env bash
# The read-only mount at scale: a tree of 1,000,000 small files (1,000
# directories x 1,000 files of 0-2 KiB, seeded, built once and kept under
# $BENCH_DIR) backed up and walked through a whole-store mount, against `find`
# on the disk, cold; then a 10,000,000-entry store written straight through
# the library (examples/gen_store.rs) and a 100,000-entry directory.
# Prints times, ratios to the disk and the mount's memory. Needs root (drops
# caches, mounts). Sizes: DIRS, FILES, BIG_DIRS (x 1,000 files). REAL_ONLY=1
# skips the generated stores.
set -euo pipefail
V1=${V1:-unused} V2=${V2:-unused}
source "$(dirname "$0")/bench-common.sh"
need_tools
[ -n "${SKIP_BUILD:-}" ] || (cd "$ROOT" && cargo build --release --locked -q --example gen_store)
GEN="$ROOT/target/release/examples/gen_store"
DIRS=${DIRS:-1000} FILES=${FILES:-1000} BIG_DIRS=${BIG_DIRS:-10000}
RESULTS=$BENCH_DIR/scale-results.txt
: > "$RESULTS"
TREE=$BENCH_DIR/scale-tree-$DIRS-$FILES
MNT=$BENCH_DIR/scale-mnt
mkdir -p "$MNT"
MID=d$(printf %04d $((DIRS / 2)))
GMID=dir-$(printf %06d $((BIG_DIRS / 2)))
cleanup() { umount -l "$MNT" 2>/dev/null || true; }
trap cleanup EXIT

if [ ! -e "$TREE/.done" ]; then
  echo "building $TREE ($DIRS x $FILES files)..."
  rm -rf "$TREE"
  python3 - "$TREE" "$DIRS" "$FILES" <<'EOF'
import os, random, sys
root, dirs, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(42)
for d in range(dirs):
    p = os.path.join(root, f"d{d:04}")
    os.makedirs(p)
    for f in range(files):
        with open(os.path.join(p, f"f{f:05}"), "wb") as fh:
            fh.write(rnd.randbytes(rnd.randrange(2049)))
open(os.path.join(root, ".done"), "w").close()
EOF
fi

rss_of() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_of() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

# mount_and_walk NAME STORE PATH_IN_LATEST: ready time, cold find, RSS,
# `ls -l` of one directory, recorded as NAME-*.
mount_and_walk() {
  local name=$1 store=$2 sub=$3 dir=$4
  drop_caches
  local t0 t1 pid n
  t0=$(date +%s.%N)
  "$K" at "$store" mount --daemon -q "$MNT"
  until ls "$MNT/latest/" >/dev/null 2>&1; do sleep 0.01; done
  t1=$(date +%s.%N)
  pid=$(pgrep -f "klosetfs at $store mount" | head -1)
  echo "$name-ready $(echo "$t1 - $t0" | bc) $(rss_of "$pid")" | tee -a "$RESULTS"
  t0=$(date +%s.%N)
  n=$(find "$MNT/latest/$sub" -type f | wc -l)
  t1=$(date +%s.%N)
  echo "$name-find $(echo "$t1 - $t0" | bc) $(rss_of "$pid") $n files, peak $(hwm_of "$pid") KiB" | tee -a "$RESULTS"
  sleep 1
  echo "$name-after-walk 0 $(rss_of "$pid")" | tee -a "$RESULTS"
  drop_caches
  t0=$(date +%s.%N)
  ls -l "$MNT/latest/$sub/$dir" > /dev/null
  t1=$(date +%s.%N)
  echo "$name-ls-l $(echo "$t1 - $t0" | bc) $(rss_of "$pid")" | tee -a "$RESULTS"
  umount "$MNT"
  while pgrep -f "klosetfs at $store mount" >/dev/null; do sleep 0.1; done
}

machine_facts
echo "== $((DIRS * FILES)) real files =="
drop_caches
timed disk-find sh -c "find '$TREE' -type f | wc -l"
drop_caches
t0=$(date +%s.%N); ls -l "$TREE/$MID" > /dev/null; t1=$(date +%s.%N)
echo "disk-ls-l $(echo "$t1 - $t0" | bc) 0" | tee -a "$RESULTS"
STORE=$BENCH_DIR/scale-store
rm -rf "$STORE"
"$K" at "$STORE" create -q
drop_caches
timed backup "$K" at "$STORE" backup -q "$TREE"
mount_and_walk real "$STORE" "${TREE#/}" "$MID"

if [ -z "${REAL_ONLY:-}" ]; then
  echo "== $((BIG_DIRS * 1000)) generated entries =="
  BIG=$BENCH_DIR/scale-gen-$BIG_DIRS
  if [ ! -e "$BIG/config" ]; then "$GEN" "$BIG" "$BIG_DIRS" 1000; fi
  mount_and_walk gen "$BIG" gen "$GMID"
  WIDE=$BENCH_DIR/scale-wide
  if [ ! -e "$WIDE/config" ]; then "$GEN" "$WIDE" 2 100000; fi
  mount_and_walk wide "$WIDE" gen dir-000001
fi

f() { awk -v n="$1" -v c="$2" '$1==n {print $c}' "$RESULTS" | tail -1; }
echo
echo "== summary =="
machine_facts
echo "backup of $((DIRS * FILES)) files: $(f backup 2) s, peak RSS $(( $(f backup 3) / 1024 )) MiB"
if [ -n "${REAL_ONLY:-}" ]; then
  echo "mount ready: $(f real-ready 2) s (1M)"
  echo "cold find: mount $(f real-find 2) s vs disk $(f disk-find 2) s = $(ratio "$(f real-find 2)" "$(f disk-find 2)")x"
  echo "mount RSS after the walk: $(( $(f real-after-walk 3) / 1024 )) MiB (1M files)"
  echo "ls -l of 1,000 entries (kernel cache cold): mount $(f real-ls-l 2) s vs disk $(f disk-ls-l 2) s"
else
  echo "mount ready: $(f real-ready 2) s (1M), $(f gen-ready 2) s ($((BIG_DIRS * 1000)) entries)"
  echo "cold find: mount $(f real-find 2) s vs disk $(f disk-find 2) s = $(ratio "$(f real-find 2)" "$(f disk-find 2)")x"
  echo "mount RSS after the walk: $(( $(f real-after-walk 3) / 1024 )) MiB (1M files), $(( $(f gen-after-walk 3) / 1024 )) MiB ($((BIG_DIRS * 1000)) entries, find $(f gen-find 2) s)"
  echo "ls -l of 1,000 entries (kernel cache cold): mount $(f real-ls-l 2) s vs disk $(f disk-ls-l 2) s; generated $(f gen-ls-l 2) s"
  echo "ls -l of 100,000 entries: $(f wide-ls-l 2) s"
fi
