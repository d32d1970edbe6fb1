#!/usr/bin/env bash
# Mount benchmark against `restic mount`, same data and same run: cold and warm
# sequential reads of a ~1 GiB real file, `find` and `rsync -a` of a kernel tree
# out of the mount, peak RSS; then the writable mount (`cp -a` / `rsync -a` in)
# against `restic backup`, and the same copies through bindfs (a FUSE fs that
# stores nothing: the floor any FUSE filesystem starts from). Prints a markdown
# table.
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"
need_tools
T1=$(kernel_tree "$V1"); T2=$(kernel_tree "$V2"); TAR=$(kernel_tarball "$V1")
W="$BENCH_DIR/run-mount"
for m in "$W"/kmnt "$W"/rmnt "$W"/wmnt "$W"/bindfs/m "$W"/bindfs/t; do umount -l "$m" 2>/dev/null || true; done
rm -rf "$W"; mkdir -p "$W"/{kmnt,rmnt,wmnt}
RESULTS="$W/results.txt"; : > "$RESULTS"
DATA="$W/data"; mkdir -p "$DATA"
head -c 1073741824 "$TAR" > "$DATA/big"
cp -a "$T1" "$DATA/tree"
sync

"$K" at "$W/k" create -q
"$K" -q at "$W/k" backup "$DATA"
restic -q init -r "$W/r" >/dev/null
restic -q -r "$W/r" backup "$DATA" >/dev/null

pids=()
cleanup() {
  for m in "$W"/kmnt "$W"/rmnt "$W"/wmnt "$W"/bindfs/m "$W"/bindfs/t; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
wait_for() { for _ in $(seq 300); do [ -e "$1" ] && return 0; sleep 0.1; done; echo "timeout waiting for $1" >&2; return 1; }
vmhwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

drop_caches
"$K" -q at "$W/k" mount "$W/kmnt" & kpid=$!; pids+=($kpid)
restic -q -r "$W/r" mount "$W/rmnt" >/dev/null 2>&1 & rpid=$!; pids+=($rpid)
KD="$W/kmnt/latest$DATA"
wait_for "$KD/big"
wait_for "$W/rmnt/snapshots/latest"
RD="$W/rmnt/snapshots/latest$DATA"
wait_for "$RD/big"

drop_caches
timed k_cold_cat cat "$KD/big"
timed k_warm_cat cat "$KD/big"
timed r_cold_cat cat "$RD/big"
drop_caches
timed k_cli_cat "$K" -q at "$W/k" cat "latest:$DATA/big"
timed k_find sh -c "find '$KD/tree' -type f | wc -l"
timed r_find sh -c "find '$RD/tree' -type f | wc -l"
timed k_rsync rsync -a "$KD/tree/" "$W/k-rsync/"
timed r_rsync rsync -a "$RD/tree/" "$W/r-rsync/"
diff -r "$T1" "$W/k-rsync" >/dev/null && echo "klosetfs mount rsync verified"
timed k_restore "$K" -q at "$W/k" restore -to "$W/k-restore" "latest:$DATA/tree"
# For scale: rsync of the same tree from the plain local disk, cold cache.
drop_caches
timed l_rsync rsync -a "$DATA/tree/" "$W/l-rsync/"
k_rss=$(vmhwm $kpid); r_rss=$(vmhwm $rpid)
umount "$W/kmnt"; umount "$W/rmnt"; wait $kpid $rpid 2>/dev/null || true

# Writable mount versus restic backup of the same trees.
"$K" at "$W/kw" create -q
restic -q init -r "$W/rw" >/dev/null
w_copy() {
  "$K" -q at "${KW:-$W/kw}" mount --writable --spool "${KW:-$W/kw}-spool" "$@" "$W/wmnt" &
  local p=$!
  for _ in $(seq 300); do mountpoint -q "$W/wmnt" && break; sleep 0.1; done
  echo $p > "$W/wpid"
}
timed_writable() {
  local name=$1 src=$2; shift 2
  local start end
  start=$(date +%s.%N)
  w_copy "$@"
  local p; p=$(cat "$W/wpid")
  if [ "${name#w_cp}" != "$name" ]; then cp -a "$src" "$W/wmnt/tree"; else rsync -a --delete "$src/" "$W/wmnt/tree/"; fi
  local hwm; hwm=$(vmhwm "$p")
  umount "$W/wmnt"; wait "$p"
  end=$(date +%s.%N)
  echo "$name $(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.2f", b-a}') $hwm" | tee -a "$RESULTS"
}
timed_writable w_cp "$T1"
# The same copy with durability at commit instead of at every close.
"$K" at "$W/kw-commit" create -q
KW="$W/kw-commit" timed_writable w_cp_commit "$T1" --sync commit
SRC="$W/src"; cp -a "$T1" "$SRC"; sync
timed r_backup1 restic -q -r "$W/rw" backup "$SRC"
timed_writable w_rsync "$T2" --base latest
rsync -a --delete "$T2/" "$SRC/"; sync
timed r_backup2 restic -q -r "$W/rw" backup "$SRC"
# The FUSE floor: the same cp -a and rsync through bindfs, a FUSE filesystem
# that only passes each call on to a directory on tmpfs and stores nothing.
BF="$W/bindfs"; mkdir -p "$BF/t" "$BF/m"; mount -t tmpfs tmpfs "$BF/t"; mkdir "$BF/t/d"
bindfs "$BF/t/d" "$BF/m"
timed b_cp cp -a "$T1" "$BF/m/tree"
timed b_rsync rsync -a --delete "$T2/" "$BF/m/tree/"
umount "$BF/m"; umount "$BF/t"
"$K" -q at "$W/kw" restore -to "$W/w-check" "latest:/tree"
diff -r "$T2" "$W/w-check" >/dev/null && echo "writable mount snapshot verified"

mbps() { awk -v s="$1" 'BEGIN { if (s > 0) printf "%.0f", 1024 / s; else print "n/a" }'; }
{
  echo "### Mounts, linux-source $V1 (1 GiB of its tarball as the big file), $(nproc) cores, $(date -u +%F)"
  echo
  echo "| measure | klosetfs | restic | ratio | target |"
  echo "|---|---|---|---|---|"
  echo "| cold cat 1 GiB, MiB/s | $(mbps "$(secs k_cold_cat)") | $(mbps "$(secs r_cold_cat)") | $(ratio "$(secs r_cold_cat)" "$(secs k_cold_cat)")× faster | ≥ 3× |"
  echo "| mount cold cat vs \`klosetfs cat\`, MiB/s | $(mbps "$(secs k_cold_cat)") | $(mbps "$(secs k_cli_cat)") (cli) | $(ratio "$(secs k_cli_cat)" "$(secs k_cold_cat)") | ≥ 0.5 |"
  echo "| warm re-read, MiB/s | $(mbps "$(secs k_warm_cat)") | | | ≥ 2000 |"
  echo "| find -type f, s | $(secs k_find) | $(secs r_find) | $(ratio "$(secs k_find)" "$(secs r_find)") | ≤ 0.5 |"
  echo "| rsync -a tree out, s | $(secs k_rsync) | $(secs r_rsync) | $(ratio "$(secs k_rsync)" "$(secs r_rsync)") | ≤ 0.5 |"
  echo "| rsync out vs \`klosetfs restore\`, s | $(secs k_rsync) | $(secs k_restore) (restore) | $(ratio "$(secs k_rsync)" "$(secs k_restore)") | ≤ 1.5 |"
  echo "| for scale: rsync out vs rsync from the local disk (cold), s | $(secs k_rsync) | $(secs l_rsync) (local) | $(ratio "$(secs k_rsync)" "$(secs l_rsync)") | |"
  echo "| mount peak RSS, MiB | $((k_rss / 1024)) | $((r_rss / 1024)) | $(ratio "$k_rss" "$r_rss") | ≤ 0.5 |"
  echo "| cp -a tree into writable mount + unmount vs restic backup, s | $(secs w_cp) | $(secs r_backup1) | $(ratio "$(secs w_cp)" "$(secs r_backup1)") | ≤ 1.2 |"
  echo "| same cp -a with \`--sync commit\` vs restic backup, s | $(secs w_cp_commit) | $(secs r_backup1) | $(ratio "$(secs w_cp_commit)" "$(secs r_backup1)") | |"
  echo "| rsync -a next version into mount on base vs restic backup, s | $(secs w_rsync) | $(secs r_backup2) | $(ratio "$(secs w_rsync)" "$(secs r_backup2)") | ≤ 1.5 |"
  echo "| FUSE floor: the same cp -a through bindfs (stores nothing) vs restic backup, s | $(secs b_cp) | $(secs r_backup1) | $(ratio "$(secs b_cp)" "$(secs r_backup1)") | |"
  echo "| FUSE floor: the same rsync -a through bindfs vs restic backup, s | $(secs b_rsync) | $(secs r_backup2) | $(ratio "$(secs b_rsync)" "$(secs r_backup2)") | |"
  echo "| writable mount peak RSS while copying, MiB | $(( $(rss w_cp) / 1024 )) / $(( $(rss w_rsync) / 1024 )) | | | ≤ 512 |"
} | tee "$W/table.md"
