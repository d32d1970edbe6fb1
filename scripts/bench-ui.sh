#!/usr/bin/env bash
# Web UI benchmark (`klosetfs ui`), same store and same run as its floors: the
# first page and the snapshot list, a kernel tree's top directory and its
# largest one (include/linux) listed cold, a search of the whole tree by name,
# a 20,000-entry directory listed whole, a cold 1 GiB download against a cold
# `cat` through the read-only mount, and the server's peak RSS. Needs root
# (drops caches) and curl.
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"
need_tools
TAR=$(kernel_tarball "$V1"); T1=$(kernel_tree "$V1")
W="$BENCH_DIR/run-ui"
umount -l "$W/mnt" 2>/dev/null || true
rm -rf "$W"; mkdir -p "$W/data/wide" "$W/mnt"
head -c 1073741824 "$TAR" > "$W/data/big"
(cd "$W/data/wide" && seq -f 'file-%05.0f.txt' 1 20000 | xargs touch)
cp -a "$T1" "$W/data/tree"
KT="$W/data/tree/$(ls "$W/data/tree" | head -1)"
NT=$(find "$KT" | wc -l)
"$K" at "$W/k" create -q
"$K" -q at "$W/k" backup "$W/data"
tok=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'); echo "$tok" > "$W/token"
pids=()
cleanup() { umount "$W/mnt" 2>/dev/null || umount -l "$W/mnt" 2>/dev/null || true; for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
"$K" -q at "$W/k" ui --no-open --token-file "$W/token" > "$W/ui.out" 2>&1 & ui=$!; pids+=($ui)
for _ in $(seq 150); do grep -q token= "$W/ui.out" && break; sleep 0.2; done
base=$(sed -n 's#^klosetfs ui: \(http://[^/]*\)/.*#\1#p' "$W/ui.out")
H="Authorization: Bearer $tok"
t() { curl -sf -o /dev/null -w '%{time_total}' -H "$H" "$@" | awk '{ printf "%.3f", $1 }'; }
enc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1].encode(), safe="/"))' "$1"; }
snap=$(curl -sf -H "$H" "$base/api/snapshots" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
drop_caches
page=$(t "$base/"); list=$(t "$base/api/snapshots")
top=$(t "$base/api/ls?snap=$snap&path=$(enc "$KT")")
incl=$(t "$base/api/ls?snap=$snap&path=$(enc "$KT/include/linux")&limit=5000")
drop_caches
search=$(t "$base/api/search?snap=$snap&glob=$(enc 'Kconfig*')&limit=2000")
drop_caches
s=$(date +%s.%N); find "$KT" -name 'Kconfig*' > /dev/null; e=$(date +%s.%N)
find_s=$(awk -v a="$s" -v b="$e" 'BEGIN { printf "%.3f", b - a }')
wide=$(t "$base/api/ls?snap=$snap&path=$(enc "$W/data/wide")&limit=5000")
wide_all=0
for off in 0 5000 10000 15000; do
  x=$(t "$base/api/ls?snap=$snap&path=$(enc "$W/data/wide")&limit=5000&offset=$off")
  wide_all=$(awk -v a="$wide_all" -v b="$x" 'BEGIN { printf "%.3f", a + b }')
done
drop_caches
dl=$(t "$base/api/file?snap=$snap&path=$(enc "$W/data/big")&download=1")
rss=$(awk '/VmHWM/ {print $2}' "/proc/$ui/status")
kill "$ui"
"$K" -q at "$W/k" mount "$W/mnt" & pids+=($!)
for _ in $(seq 300); do [ -e "$W/mnt/latest" ] && break; sleep 0.1; done
drop_caches
s=$(date +%s.%N); cat "$W/mnt/latest$W/data/big" > /dev/null; e=$(date +%s.%N)
cat_s=$(echo "$e - $s" | bc)
mibs() { awk -v s="$1" 'BEGIN { printf "%.0f", 1024 / s }'; }
{
  machine_facts
  echo
  echo "### Web UI, $(date -u +%F)"
  echo
  echo "| measure | klosetfs ui | compared with | ratio | target |"
  echo "|---|---|---|---|---|"
  echo "| first page (HTML), cold, s | $page | | | ≤ 0.2 |"
  echo "| snapshot list (/api/snapshots), s | $list | | | ≤ 0.2 |"
  echo "| kernel tree ($NT entries): its top directory / include/linux ($(ls "$KT/include/linux" | wc -l) entries), cold, s | $top / $incl | | | ≤ 0.2 |"
  echo "| search of every name in the tree (\`Kconfig*\`), cold, s | $search | $find_s (find -name on the local disk, cold) | $(ratio "$search" "$find_s") | |"
  echo "| 20,000-entry directory, first 5,000 / all four pages, s | $wide / $wide_all | | | ≤ 1 |"
  echo "| cold 1 GiB download, MiB/s | $(mibs "$dl") | $(mibs "$cat_s") (cold cat through the mount) | $(ratio "$cat_s" "$dl") | ≥ 0.8 |"
  echo "| server peak RSS, MiB | $((rss / 1024)) | | | ≤ 256 |"
} | tee "$W/table.md"
