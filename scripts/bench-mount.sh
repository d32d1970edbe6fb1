#!/usr/bin/env bash
# Mount benchmark against `restic mount`, same data and same run: cold and warm
# sequential reads of a ~1 GiB real file, `find` and `rsync -a` of a kernel tree
# out of the mount, peak RSS; then the writable mount (`cp -a` / `rsync -a` in)
# against `restic backup` and against the FUSE floor: the same copies into
# examples/memfs.rs (a minimal in-memory fuser filesystem with klosetfs's mount
# options) and through bindfs; FUSE requests per copied file from the kernel's
# tracepoint. The walks out of the read-only mount are also timed out of
# memfs prefilled with the same tree (the FUSE floor for reading). Prints
# markdown tables and the machine facts that move them.
# PARTS="read write" (the default) runs both halves; PARTS=write only the
# writable one.
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"
need_tools
T1=$(kernel_tree "$V1"); T2=$(kernel_tree "$V2"); TAR=$(kernel_tarball "$V1")
W="$BENCH_DIR/run-mount"
for m in "$W"/kmnt "$W"/rmnt "$W"/wmnt "$W"/mmnt "$W"/bindfs/m "$W"/bindfs/t "$W"/drv; do umount -l "$m" 2>/dev/null || true; done
rm -rf "$W"; mkdir -p "$W"/{kmnt,rmnt,wmnt}
RESULTS="$W/results.txt"; : > "$RESULTS"
DATA="$W/data"; mkdir -p "$DATA"
PARTS=${PARTS:-read write}
if [[ $PARTS == *read* ]]; then
  head -c 1073741824 "$TAR" > "$DATA/big"
  cp -a "$T1" "$DATA/tree"
  sync
fi

pids=()
cleanup() {
  for m in "$W"/kmnt "$W"/rmnt "$W"/wmnt "$W"/mmnt "$W"/bindfs/m "$W"/bindfs/t "$W"/drv; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
wait_for() { for _ in $(seq 300); do [ -e "$1" ] && return 0; sleep 0.1; done; echo "timeout waiting for $1" >&2; return 1; }
vmhwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

if [[ $PARTS == *read* ]]; then
"$K" at "$W/k" create -q
"$K" -q at "$W/k" backup "$DATA"
restic -q init -r "$W/r" >/dev/null
restic -q -r "$W/r" backup "$DATA" >/dev/null


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
# The floor: find and rsync of the same tree on the plain local disk, each
# right beside the mount's and from the same cold start.
drop_caches
timed k_find sh -c "find '$KD/tree' -type f | wc -l"
drop_caches
timed l_find sh -c "find '$DATA/tree' -type f | wc -l"
drop_caches
timed r_find sh -c "find '$RD/tree' -type f | wc -l"
drop_caches
timed k_rsync rsync -a "$KD/tree/" "$W/k-rsync/"
drop_caches
timed l_rsync rsync -a "$DATA/tree/" "$W/l-rsync/"
drop_caches
timed r_rsync rsync -a "$RD/tree/" "$W/r-rsync/"
diff -r "$T1" "$W/k-rsync" >/dev/null && echo "klosetfs mount rsync verified"
# The FUSE floor for the walk: the same find and rsync out of memfs holding
# the tree in its memory (the kernel's caches dropped, as for the others), so
# what FUSE itself costs here is in the same run as the disk and the mount.
mkdir -p "$W/mmnt"
"$MEMFS" "$W/mmnt" --prefill "$DATA/tree" 2>>"$W/memfs.log" & mp=$!; pids+=($mp)
for _ in $(seq 600); do mountpoint -q "$W/mmnt" && break; sleep 0.1; done
drop_caches
timed m_find sh -c "find '$W/mmnt' -type f | wc -l"
drop_caches
timed m_rsync_out rsync -a "$W/mmnt/" "$W/m-rsync/"
umount "$W/mmnt"; wait $mp || true
drop_caches
timed k_restore "$K" -q at "$W/k" restore -to "$W/k-restore" "latest:$DATA/tree"
k_rss=$(vmhwm $kpid); r_rss=$(vmhwm $rpid)
umount "$W/kmnt"; umount "$W/rmnt"; wait $kpid $rpid 2>/dev/null || true

fi

# Writable mount versus restic backup and the FUSE floor, same trees.
if [[ $PARTS == *write* ]]; then
"$K" at "$W/kw" create -q
restic -q init -r "$W/rw" >/dev/null
w_copy() {
  "$K" -q at "${KW:-$W/kw}" mount --writable --spool "${KW:-$W/kw}-spool" "$@" "$W/wmnt" &
  local p=$!
  for _ in $(seq 300); do mountpoint -q "$W/wmnt" && break; sleep 0.1; done
  echo $p > "$W/wpid"
}
# timed_writable NAME SRC [MOUNT ARGS]: mount, copy (cp -a for w_cp*, else
# rsync -a --delete), unmount (the commit), all timed, caches dropped first.
timed_writable() {
  local name=$1 src=$2; shift 2
  local start end
  drop_caches
  start=$(date +%s.%N)
  w_copy "$@"
  local p; p=$(cat "$W/wpid")
  if [ "${name#w_cp}" != "$name" ]; then cp -a "$src" "$W/wmnt/tree"; else rsync -a --delete "$src/" "$W/wmnt/tree/"; fi
  local hwm; hwm=$(vmhwm "$p")
  umount "$W/wmnt"; wait "$p"
  end=$(date +%s.%N)
  echo "$name $(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.2f", b-a}') $hwm" | tee -a "$RESULTS"
}
# timed_memfs NAME SRC [--prefill DIR]: the same through the in-memory floor.
timed_memfs() {
  local name=$1 src=$2; shift 2
  mkdir -p "$W/mmnt"
  "$MEMFS" "$W/mmnt" "$@" 2>>"$W/memfs.log" & local p=$!
  pids+=($p)
  for _ in $(seq 600); do mountpoint -q "$W/mmnt" && break; sleep 0.1; done
  drop_caches
  local start end
  start=$(date +%s.%N)
  if [ "${name#m_cp}" != "$name" ]; then cp -a "$src" "$W/mmnt/tree"; else rsync -a --delete "$src/" "$W/mmnt/tree/"; fi
  umount "$W/mmnt"; wait "$p"
  end=$(date +%s.%N)
  echo "$name $(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.2f", b-a}') 0" | tee -a "$RESULTS"
}
timed_writable w_cp "$T1"
du -sb "$W/kw" | awk '{print "w_store", $1, 0}' >> "$RESULTS"
timed_memfs m_cp "$T1"
"$K" at "$W/kb" create -q
drop_caches
timed k_backup "$K" -q at "$W/kb" backup "$T1"
du -sb "$W/kb" | awk '{print "k_store", $1, 0}' >> "$RESULTS"
SRC="$W/src"; cp -a "$T1" "$SRC"; sync
drop_caches
timed r_backup1 restic -q -r "$W/rw" backup "$SRC"
timed_writable w_rsync "$T2" --base latest
mkdir -p "$W/base"; cp -a "$T1" "$W/base/tree"
timed_memfs m_rsync "$T2" --prefill "$W/base"
rsync -a --delete "$T2/" "$SRC/"; sync
drop_caches
timed r_backup2 restic -q -r "$W/rw" backup "$SRC"
# The same copies through bindfs, which passes each call on to tmpfs.
BF="$W/bindfs"; mkdir -p "$BF/t" "$BF/m"; mount -t tmpfs tmpfs "$BF/t"; mkdir "$BF/t/d"
bindfs "$BF/t/d" "$BF/m"
drop_caches
timed b_cp cp -a "$T1" "$BF/m/tree"
drop_caches
timed b_rsync rsync -a --delete "$T2/" "$BF/m/tree/"
umount "$BF/m"; umount "$BF/t"
"$K" -q at "$W/kw" restore -to "$W/w-check" "latest:/tree"
diff -r "$T2" "$W/w-check" >/dev/null && echo "writable mount snapshot verified"
# drivers/ from tmpfs, caches warm: time, then requests per copied file.
DRV="$W/drv"; mkdir -p "$DRV"; mount -t tmpfs tmpfs "$DRV"
cp -a "$T1"/*/drivers "$DRV/drivers"
NDRV=$(find "$DRV/drivers" | wc -l)
for round in 1 2; do
  KW="$W/kw-drv$round" ; "$K" at "$KW" create -q
  KW="$KW" timed_writable "w_cp_drv$round" "$DRV/drivers"
  timed_memfs "m_cp_drv$round" "$DRV/drivers"
done
"$K" at "$W/kw-req" create -q
KW="$W/kw-req" w_copy; fuse_requests "$W/req-k" cp -a "$DRV/drivers" "$W/wmnt/tree"; umount "$W/wmnt"; wait "$(cat "$W/wpid")"
"$MEMFS" "$W/mmnt" 2>>"$W/memfs.log" & mp=$!
for _ in $(seq 300); do mountpoint -q "$W/mmnt" && break; sleep 0.1; done
fuse_requests "$W/req-m" cp -a "$DRV/drivers" "$W/mmnt/tree"; umount "$W/mmnt"; wait $mp
umount "$DRV"
fi

mbps() { awk -v s="$1" 'BEGIN { if (s > 0) printf "%.0f", 1024 / s; else print "n/a" }'; }
med() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (a < b ? a : b) }'; }
{
  machine_facts
  echo
if [[ $PARTS == *read* ]]; then
  echo "### Mounts, linux-source $V1 (1 GiB of its tarball as the big file)"
  echo
  echo "| measure | klosetfs | restic | ratio | target |"
  echo "|---|---|---|---|---|"
  echo "| cold cat 1 GiB, MiB/s | $(mbps "$(secs k_cold_cat)") | $(mbps "$(secs r_cold_cat)") | $(ratio "$(secs r_cold_cat)" "$(secs k_cold_cat)")× faster | ≥ 3× |"
  echo "| mount cold cat vs \`klosetfs cat\`, MiB/s | $(mbps "$(secs k_cold_cat)") | $(mbps "$(secs k_cli_cat)") (cli) | $(ratio "$(secs k_cli_cat)" "$(secs k_cold_cat)") | ≥ 0.5 |"
  echo "| warm re-read, MiB/s | $(mbps "$(secs k_warm_cat)") | | | ≥ 2000 |"
  echo "| find -type f, s | $(secs k_find) | $(secs r_find) | $(ratio "$(secs k_find)" "$(secs r_find)") | ≤ 0.5 |"
  echo "| rsync -a tree out, s | $(secs k_rsync) | $(secs r_rsync) | $(ratio "$(secs k_rsync)" "$(secs r_rsync)") | ≤ 0.5 |"
  echo "| rsync out vs \`klosetfs restore\`, s | $(secs k_rsync) | $(secs k_restore) (restore) | $(ratio "$(secs k_rsync)" "$(secs k_restore)") | ≤ 1.5 |"
  echo "| cold find vs find on the local disk (cold), s | $(secs k_find) | $(secs l_find) (local) | $(ratio "$(secs k_find)" "$(secs l_find)") | ≤ 1.5 |"
  echo "| rsync out vs rsync from the local disk (cold), s | $(secs k_rsync) | $(secs l_rsync) (local) | $(ratio "$(secs k_rsync)" "$(secs l_rsync)") | ≤ 1.25 |"
  echo "| FUSE floor: find / rsync out of memfs holding the tree, vs the local disk, s | $(secs m_find) / $(secs m_rsync_out) | $(secs l_find) / $(secs l_rsync) (local) | $(ratio "$(secs m_find)" "$(secs l_find)") / $(ratio "$(secs m_rsync_out)" "$(secs l_rsync)") | |"
  echo "| klosetfs find / rsync out vs that floor | $(secs k_find) / $(secs k_rsync) | $(secs m_find) / $(secs m_rsync_out) (memfs) | $(ratio "$(secs k_find)" "$(secs m_find)") / $(ratio "$(secs k_rsync)" "$(secs m_rsync_out)") | |"
  echo "| mount peak RSS, MiB | $((k_rss / 1024)) | $((r_rss / 1024)) | $(ratio "$k_rss" "$r_rss") | ≤ 0.5 |"
  echo
fi
if [[ $PARTS == *write* ]]; then
  echo "### Writable mount, linux-source $V1 → $V2 (caches dropped before each copy)"
  echo
  echo "| measure | klosetfs | compared with | ratio | target |"
  echo "|---|---|---|---|---|"
  echo "| cp -a tree into writable mount + unmount vs memfs (in-memory FUSE floor), s | $(secs w_cp) | $(secs m_cp) | $(ratio "$(secs w_cp)" "$(secs m_cp)") | ≤ 1.5 |"
  echo "| same cp -a vs restic backup, s | $(secs w_cp) | $(secs r_backup1) | $(ratio "$(secs w_cp)" "$(secs r_backup1)") | ≤ 1.0 |"
  echo "| rsync -a next version onto a --base mount vs memfs prefilled with the base, s | $(secs w_rsync) | $(secs m_rsync) | $(ratio "$(secs w_rsync)" "$(secs m_rsync)") | ≤ 1.5 |"
  echo "| same rsync vs restic backup on top, s | $(secs w_rsync) | $(secs r_backup2) | $(ratio "$(secs w_rsync)" "$(secs r_backup2)") | ≤ 1.5 |"
  echo "| for scale: the same cp -a / rsync through bindfs, s | $(secs b_cp) / $(secs b_rsync) | | | |"
  echo "| cp -a of drivers/ from tmpfs, warm, vs memfs (best of 2), s | $(med "$(secs w_cp_drv1)" "$(secs w_cp_drv2)") | $(med "$(secs m_cp_drv1)" "$(secs m_cp_drv2)") | $(ratio "$(med "$(secs w_cp_drv1)" "$(secs w_cp_drv2)")" "$(med "$(secs m_cp_drv1)" "$(secs m_cp_drv2)")") | ≤ 1.5 |"
  echo "| FUSE requests per copied file (cp -a of drivers/, $NDRV entries) | $(per_file "$W/req-k" "$NDRV") | $(per_file "$W/req-m" "$NDRV") (memfs) | | ≤ 7 |"
  echo "| store size after the cp -a vs \`klosetfs backup\` of the tree, MiB | $(( $(secs w_store) >> 20 )) | $(( $(secs k_store) >> 20 )) | $(ratio "$(secs w_store)" "$(secs k_store)") | ≤ 1.05 |"
  echo "| writable mount peak RSS while copying (cp / rsync), MiB | $(( $(rss w_cp) / 1024 )) / $(( $(rss w_rsync) / 1024 )) | | | ≤ 512 |"
  echo
  echo "Requests by kind (klosetfs): $(tr '\n' ' ' < "$W/req-k")"
  echo
  echo "Requests by kind (memfs): $(tr '\n' ' ' < "$W/req-m")"
fi
} | tee "$W/table.md"
