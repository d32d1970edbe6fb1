#!/usr/bin/env bash
# The writable WebDAV drive against its floor, same data and same run:
# `rclone copy` of a kernel tree over WebDAV on loopback into
# `klosetfs serve --writable` (the copy, then the stop that commits the
# snapshot) vs the same `rclone copy` into `rclone serve webdav` of a plain
# directory (WebDAV with no backup work). Prints a markdown table with the
# ratios, the server's peak RSS, and the machine facts that move them.
#   SKIP_BUILD=1 V1=6.1.192-2 V2=6.1.192-2 scripts/bench-dav.sh
# ROUNDS=N (default 2) alternates the two servers N times; the best of each
# is reported.
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"
need_tools
T1=$(kernel_tree "$V1")
W="$BENCH_DIR/run-dav"
rm -rf "$W"; mkdir -p "$W"
RESULTS="$W/results.txt"; : > "$RESULTS"
ROUNDS=${ROUNDS:-2}
TOKEN=bench-dav-token-0123456789
echo "$TOKEN" > "$W/token"
PASS=$(rclone obscure "$TOKEN")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
vmhwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
wait_url() { for _ in $(seq 600); do [ -s "$1" ] && { head -n 1 "$1"; return 0; }; sleep 0.1; done; echo "no URL in $1" >&2; return 1; }
copy_into() { # URL NAME
  timed "$2" rclone copy "$T1" :webdav:tree --webdav-url "$1" --webdav-vendor owncloud \
    --webdav-user me --webdav-pass "$PASS" --transfers 8 --checkers 8
}
files=$(find "$T1" -type f | wc -l); bytes=$(du -sb "$T1" | cut -f1)

for r in $(seq "$ROUNDS"); do
  # The floor: a plain directory behind rclone's own WebDAV server.
  rm -rf "$W/plain"; mkdir -p "$W/plain"; drop_caches; cat "$T1"/Makefile >/dev/null
  rclone serve webdav "$W/plain" --addr 127.0.0.1:0 --user me --pass "$TOKEN" > "$W/floor.log" 2>&1 & fpid=$!; pids+=($fpid)
  furl=""; for _ in $(seq 600); do furl=$(grep -o 'http://127.0.0.1:[0-9]*/' "$W/floor.log" | head -n 1 || true); [ -n "$furl" ] && break; sleep 0.1; done
  [ -n "$furl" ] || { echo "rclone serve webdav printed no URL" >&2; exit 1; }
  copy_into "$furl" "floor_copy_$r"
  echo "floor_rss_$r 0 $(vmhwm "$fpid")" >> "$RESULTS"
  kill "$fpid"; wait "$fpid" 2>/dev/null || true

  # klosetfs: the same copy into a writable session of a fresh store.
  rm -rf "$W/k" "$W/cache" "$W/k.out"; drop_caches
  "$K" -q at "$W/k" create -q
  KLOSETFS_CACHE_DIR="$W/cache" "$K" -q at "$W/k" serve --writable --listen 127.0.0.1:0 \
    --token-file "$W/token" > "$W/k.out" & kpid=$!; pids+=($kpid)
  kurl=$(wait_url "$W/k.out")
  copy_into "$kurl" "k_copy_$r"
  echo "k_rss_$r 0 $(vmhwm "$kpid")" >> "$RESULTS"
  start=$(date +%s.%N)
  kill -TERM "$kpid"; wait "$kpid"
  echo "k_stop_$r $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}') 0" | tee -a "$RESULTS"
  grep -q '^snapshot ' "$W/k.out" || { echo "no snapshot printed" >&2; exit 1; }
done
best() { awk -v p="$1" 'index($1, p) == 1 { if (m == "" || $2 < m) m = $2 } END { print m }' "$RESULTS"; }
peak() { awk -v p="$1" 'index($1, p) == 1 { if ($3 > m) m = $3 } END { print m }' "$RESULTS"; }
f=$(best floor_copy_); k=$(best k_copy_); s=$(best k_stop_)
ks=$(awk -v a="$k" -v b="$s" 'BEGIN {printf "%.2f", a + b}')
echo
machine_facts
echo "Data: linux $V1, $files files, $((bytes / 1048576)) MiB; rclone $(rclone version | head -n 1 | awk '{print $2}'), --transfers 8; best of $ROUNDS"
echo
echo "| rclone copy over WebDAV (loopback) | time | × floor | server peak RSS |"
echo "|---|---|---|---|"
echo "| rclone serve webdav, plain directory (floor) | ${f} s | 1.00 | $(( $(peak floor_rss_) / 1024 )) MiB |"
echo "| klosetfs serve --writable: the copy | ${k} s | $(ratio "$k" "$f") | $(( $(peak k_rss_) / 1024 )) MiB |"
echo "| klosetfs: the copy and the stop's commit | ${ks} s | $(ratio "$ks" "$f") | |"
