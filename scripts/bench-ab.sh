#!/usr/bin/env bash
# Two builds of klosetfs on a local store, interleaved in one run: does a
# change make anything slower? OLD is a release binary of the commit before
# (build it with `git worktree add /tmp/old <commit> && cargo build --release
# --manifest-path /tmp/old/Cargo.toml`); NEW is this tree's release build.
# Each round runs every step with OLD, then with NEW (the order swaps every
# round, so a warming disk or page cache favours neither), on its own store:
#   backup of the kernel tree V1 (first), no-change backup, restore of it;
#   through the read-only mount with empty caches: `find -type f`,
#   `rsync -a` of Documentation/ out, `cat` of the ~1.4 GB tarball;
#   the writable mount: `cp -a` of Documentation/ in, to its snapshot.
# Prints each step's median over ROUNDS (default 3) and NEW/OLD.
#   OLD=/tmp/old/target/release/klosetfs ROUNDS=3 bash scripts/bench-ab.sh
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"
need_tools
OLD=${OLD:?set OLD to the release binary to compare against}
NEW=$K
ROUNDS=${ROUNDS:-3}
T=$(kernel_tree "$V1")
TAR=$(kernel_tarball "$V1")
DOC=$(find "$T" -maxdepth 2 -type d -name Documentation | head -1)
W="$BENCH_DIR/run-ab"
for m in "$W"/mnt; do umount -l "$m" 2>/dev/null || true; done
rm -rf "$W"; mkdir -p "$W/mnt" "$W/big"
cp "$TAR" "$W/big/linux.tar"
RESULTS="$W/results.txt"; : > "$RESULTS"
mpid=
cleanup() { umount "$W/mnt" 2>/dev/null || umount -l "$W/mnt" 2>/dev/null || true; [ -n "$mpid" ] && kill "$mpid" 2>/dev/null || true; }
trap cleanup EXIT

wait_mount() { for _ in $(seq 600); do mountpoint -q "$W/mnt" && return 0; sleep 0.05; done; echo "mount did not come up" >&2; return 1; }

one() { # one TAG BIN: every step with BIN, results as STEP_TAG
  local tag=$1 b=$2 st="$W/store-$1"
  rm -rf "$st" "$W/out" "$W/cache-$tag"; "$b" -q at "$st" create
  export KLOSETFS_CACHE_DIR="$W/cache-$tag"
  drop_caches; timed "backup_$tag" "$b" -q at "$st" backup "$T" "$W/big"
  drop_caches; timed "nochange_$tag" "$b" -q at "$st" backup "$T" "$W/big"
  drop_caches; timed "restore_$tag" "$b" -q at "$st" restore -to "$W/out" "latest:$T"
  rm -rf "$W/out"
  drop_caches
  "$b" -q at "$st" mount "$W/mnt" & mpid=$!
  wait_mount
  timed "find_$tag" find "$W/mnt/latest$T" -type f
  timed "rsync_$tag" rsync -a "$W/mnt/latest$DOC/" "$W/out/"
  timed "cat_$tag" cat "$W/mnt/latest$W/big/linux.tar"
  umount "$W/mnt"; wait "$mpid" 2>/dev/null || true; mpid=
  rm -rf "$W/out"
  drop_caches
  "$b" -q at "$st" mount --writable "$W/mnt" > "$W/writable-$tag.out" & mpid=$!
  wait_mount
  timed "cpin_$tag" cp -a "$DOC" "$W/mnt/"
  local t0; t0=$(date +%s.%N)
  umount "$W/mnt"; wait "$mpid"; mpid=
  echo "commit_$tag $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') 0" | tee -a "$RESULTS"
  rm -rf "$st"
}

for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then one old "$OLD"; one new "$NEW"; else one new "$NEW"; one old "$OLD"; fi
done

median() { awk -v n="$1" '$1==n {print $2}' "$RESULTS" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
{
  echo
  machine_facts
  echo "OLD: $OLD ($(stat -c %y "$OLD" | cut -d. -f1)); NEW: $NEW at $(cd "$ROOT" && git rev-parse --short HEAD); data: linux-source $V1 and its tarball; medians of $ROUNDS interleaved rounds."
  echo
  echo "| step (local store) | OLD, s | NEW, s | NEW / OLD |"
  echo "|---|---|---|---|"
  for s in backup nochange restore find rsync cat cpin commit; do
    echo "| $s | $(median "${s}_old") | $(median "${s}_new") | $(ratio "$(median "${s}_new")" "$(median "${s}_old")") |"
  done
} | tee "$W/table.md"
