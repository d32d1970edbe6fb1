#!/usr/bin/env bash
# Backup/restore benchmark against restic, same data, same run, same machine:
# first backup (kernel tree V1), second backup (V2 over V1), no-change backup,
# full restore, store size. Prints a markdown table of ratios (klosetfs/restic)
# and of klosetfs to the floor: the same tree through `tar | zstd -3 -T0` into
# one file (read + compress, nothing else) and back out with `zstd -d | tar -x`.
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"
need_tools
T1=$(kernel_tree "$V1"); T2=$(kernel_tree "$V2")
W="$BENCH_DIR/run-backup"; rm -rf "$W"; mkdir -p "$W"
RESULTS="$W/results.txt"; : > "$RESULTS"
SRC="$W/src"

reset_src() { rm -rf "$SRC"; cp -a "$T1" "$SRC"; sync; }
to_v2() { rsync -a --delete "$T2/" "$SRC/"; sync; }

# klosetfs
reset_src
"$K" at "$W/k" create -q
timed k_first   "$K" -q at "$W/k" backup "$SRC"
to_v2
timed k_second  "$K" -q at "$W/k" backup "$SRC"
timed k_nochange "$K" -q at "$W/k" backup "$SRC"
drop_caches
timed k_restore "$K" -q at "$W/k" restore -to "$W/k-out" "latest:$SRC"
k_size=$(du -sb "$W/k" | cut -f1)
diff -r "$T2" "$W/k-out" >/dev/null && echo "klosetfs restore verified"

# restic
reset_src
restic -q init -r "$W/r" >/dev/null
timed r_first   restic -q -r "$W/r" backup "$SRC"
to_v2
timed r_second  restic -q -r "$W/r" backup "$SRC"
timed r_nochange restic -q -r "$W/r" backup "$SRC"
drop_caches
timed r_restore restic -q -r "$W/r" restore latest --target "$W/r-out"
r_size=$(du -sb "$W/r" | cut -f1)

# floor: the first backup's and the restore's work with nothing of a backup
# tool's (no chunks, no index, no encryption), same cache states as above.
reset_src
timed f_first bash -c "tar -C '$SRC' -cf - . | zstd -q -3 -T0 -o '$W/floor.tar.zst'"
drop_caches
mkdir -p "$W/f-out"
timed f_restore bash -c "zstd -dc '$W/floor.tar.zst' | tar -C '$W/f-out' -xf -"
f_size=$(stat -c %s "$W/floor.tar.zst")

files=$(find "$T1" -type f | wc -l); bytes=$(du -sb "$T1" | cut -f1)
{
  machine_facts
  echo
  echo "### Backup and restore, linux-source $V1 → $V2 ($files files, $((bytes / 1048576)) MiB), $(nproc) cores, $(date -u +%F)"
  echo
  echo "Floor: tar | zstd -3 -T0 into one file, and zstd -d | tar -x back out ($(zstd --version | grep -o 'v[0-9.]*'))."
  echo
  echo "| step | klosetfs s | restic s | floor s | klosetfs / restic | klosetfs / floor | target (to restic) |"
  echo "|---|---|---|---|---|---|---|"
  for s in first:0.7 second:- nochange:0.5 restore:0.8; do
    n=${s%%:*}; tgt=${s#*:}; f=$(secs f_$n)
    echo "| $n backup | $(secs k_$n) | $(secs r_$n) | $f | $(ratio "$(secs k_$n)" "$(secs r_$n)") | $([ -n "$f" ] && ratio "$(secs k_$n)" "$f") | ${tgt/-/} |" | sed 's/restore backup/full restore/'
  done
  echo "| store size MiB | $((k_size / 1048576)) | $((r_size / 1048576)) | $((f_size / 1048576)) | $(ratio "$k_size" "$r_size") | $(ratio "$k_size" "$f_size") | ≤ 1.05 |"
  maxk=$(for n in first second nochange restore; do rss k_$n; done | sort -n | tail -1)
  maxr=$(for n in first second nochange restore; do rss r_$n; done | sort -n | tail -1)
  echo "| peak RSS MiB | $((maxk / 1024)) | $((maxr / 1024)) | | $(ratio "$maxk" "$maxr") | | ≤ 1.0 |"
} | tee "$W/table.md"
