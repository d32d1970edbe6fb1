#!/usr/bin/env bash
# The writable WebDAV drive against its floor, same data and same run: a
# kernel tree uploaded over WebDAV on loopback into `klosetfs serve
# --writable` (the upload, then the stop that commits the snapshot) vs the
# same upload into `rclone serve webdav` of a plain directory (WebDAV with
# no backup work). Two clients:
#  - curl, 8 uploads at once over kept-alive connections (MKCOL of every
#    folder, then a PUT per file): the servers' own speed;
#  - `rclone copy` of Documentation/ (what people run): rclone 1.60's
#    WebDAV client paces its calls 10 ms apart whatever the server, so this
#    row measures rclone as much as the server.
# Prints a markdown table with the ratios, the servers' peak RSS, and the
# machine facts that move them.
#   SKIP_BUILD=1 V1=6.1.192-2 V2=6.1.192-2 scripts/bench-dav.sh
# ROUNDS=N (default 2) alternates the two servers N times; the best of each
# is reported.
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"
need_tools
T1=$(kernel_tree "$V1")
DOC=$(find "$T1" -maxdepth 2 -type d -name Documentation | head -1)  # $T1/linux-source-6.1/Documentation
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
# The curl client's two config files: MKCOL of every folder (parents
# first), then one PUT per file, names percent-encoded.
python3 - "$T1" "$W" <<'PY'
import os, sys, urllib.parse
src, w = sys.argv[1], sys.argv[2]
q = lambda p: urllib.parse.quote(p, safe="/")
with open(f"{w}/mkcol.cfg", "w") as d, open(f"{w}/put.cfg", "w") as f:
    for root, dirs, files in os.walk(src):
        rel = os.path.relpath(root, src)
        rel = "" if rel == "." else rel + "/"
        d.write(f'url = "BASE/tree/{q(rel)}"\n')
        for n in files:
            p = os.path.join(root, n)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            f.write(f'upload-file = "{p}"\nurl = "BASE/tree/{q(rel + n)}"\n')
PY
curl_into() { # URL NAME
  sed "s|BASE/|$1|" "$W/mkcol.cfg" > "$W/mkcol.run"; sed "s|BASE/|$1|" "$W/put.cfg" > "$W/put.run"
  timed "$2" sh -c "curl -sf --no-progress-meter -u me:$TOKEN -X MKCOL -K '$W/mkcol.run' -o /dev/null &&
    curl -sf --no-progress-meter -u me:$TOKEN --parallel --parallel-max 8 -K '$W/put.run' -o /dev/null"
}
rclone_into() { # URL NAME
  timed "$2" rclone copy "$DOC" :webdav:docs --webdav-url "$1" --webdav-vendor owncloud \
    --webdav-user me --webdav-pass "$PASS" --transfers 8 --checkers 8 -q
}
files=$(find "$T1" -type f | wc -l); bytes=$(du -sb "$T1" | cut -f1)

for r in $(seq "$ROUNDS"); do
  # The floor: a plain directory behind rclone's own WebDAV server.
  rm -rf "$W/plain"; mkdir -p "$W/plain"; drop_caches
  rclone serve webdav "$W/plain" --addr 127.0.0.1:0 --user me --pass "$TOKEN" > "$W/floor.log" 2>&1 & fpid=$!; pids+=($fpid)
  furl=""; for _ in $(seq 600); do furl=$(grep -o 'http://127.0.0.1:[0-9]*/' "$W/floor.log" | head -n 1 || true); [ -n "$furl" ] && break; sleep 0.1; done
  [ -n "$furl" ] || { echo "rclone serve webdav printed no URL" >&2; exit 1; }
  curl_into "$furl" "floor_copy_$r"
  rclone_into "$furl" "floor_rclone_$r"
  echo "floor_rss_$r 0 $(vmhwm "$fpid")" >> "$RESULTS"
  kill "$fpid"; wait "$fpid" 2>/dev/null || true

  # klosetfs: the same copy into a writable session of a fresh store.
  rm -rf "$W/k" "$W/cache" "$W/k.out"; drop_caches
  "$K" -q at "$W/k" create -q
  KLOSETFS_CACHE_DIR="$W/cache" "$K" -q at "$W/k" serve --writable --listen 127.0.0.1:0 \
    --token-file "$W/token" > "$W/k.out" & kpid=$!; pids+=($kpid)
  kurl=$(wait_url "$W/k.out")
  curl_into "$kurl" "k_copy_$r"
  rclone_into "$kurl" "k_rclone_$r"
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
fr=$(best floor_rclone_); kr=$(best k_rclone_)
docs=$(find "$DOC" -type f | wc -l)
echo
machine_facts
echo "Data: linux $V1, $files files, $((bytes / 1048576)) MiB (Documentation/: $docs files); curl $(curl --version | head -n 1 | awk '{print $2}'), rclone $(rclone version | head -n 1 | awk '{print $2}'); best of $ROUNDS"
echo
echo "| upload over WebDAV (loopback) | rclone serve webdav, plain dir (floor) | klosetfs serve --writable | × floor |"
echo "|---|---|---|---|"
echo "| curl, 8 at once: the kernel tree | ${f} s | ${k} s | $(ratio "$k" "$f") |"
echo "| the same, with the stop's commit | ${f} s | ${ks} s | $(ratio "$ks" "$f") |"
echo "| rclone copy of Documentation/ (paced by rclone) | ${fr} s | ${kr} s | $(ratio "$kr" "$fr") |"
echo "| server peak RSS | $(( $(peak floor_rss_) / 1024 )) MiB | $(( $(peak k_rss_) / 1024 )) MiB | |"
