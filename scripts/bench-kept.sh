#!/usr/bin/env bash
# A remote store's second look: the walk and `rsync -a` of Documentation/
# out of a mount of an S3 store whose disk cache was kept from a first
# (cold) mount, against the same on a local store and against the plain
# directory on disk (the floor), interleaved ROUNDS times in one run. The
# page cache is dropped before each, so every source is read from disk.
# S3 is SeaweedFS behind scripts/latency-proxy.py at DELAY ms one way.
# Issue 36's goal: the kept cache at most 1.2x the local store.
#   SKIP_BUILD=1 V1=6.1.192-2 V2=6.1.192-2 ROUNDS=3 bash scripts/bench-kept.sh
source "$(dirname "$0")/bench-common.sh"
need_tools
T=$(kernel_tree "$V1")
DOC=$(find "$T" -maxdepth 2 -type d -name Documentation | head -1)
DELAY=${DELAY:-20} ROUNDS=${ROUNDS:-3}
WEED=${WEED:-$(command -v weed || echo /opt/klosetfs-s3/bin/weed)}
W="$BENCH_DIR/run-kept"
umount -l "$W/kmnt" 2>/dev/null || true
rm -rf "$W"; mkdir -p "$W"/{kmnt,weed/data}
PORT=48333 PROXY=48334 WP= PP=
cat > "$W/weed/s3.json" <<'JSON'
{"identities":[{"name":"bench","credentials":[{"accessKey":"benchkey","secretKey":"benchsecret"}],"actions":["Admin","Read","List","Tagging","Write"]}]}
JSON
cleanup() { umount "$W/kmnt" 2>/dev/null || umount -l "$W/kmnt" 2>/dev/null || true; kill -9 $WP $PP 2>/dev/null || true; }
trap cleanup EXIT
"$WEED" server -dir="$W/weed/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.port=49333 \
  -volume.port=48080 -filer.port=48888 -iam.port=48111 -s3 -s3.port=$PORT -s3.config="$W/weed/s3.json" \
  -s3.port.iceberg=0 -s3.port.lance=0 -volume.max=100 -master.volumeSizeLimitMB=1024 \
  -filer.localSocket="$W/weed/filer.sock" > "$W/weed/log" 2>&1 & WP=$!
proxy() { [ -n "$PP" ] && kill "$PP" 2>/dev/null; python3 "$ROOT/scripts/latency-proxy.py" $PROXY $PORT "$1" "$W/counts.json" & PP=$!; sleep 0.5; }
for _ in $(seq 120); do [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$PORT/)" != 000 ] && break; sleep 0.5; done
proxy 0
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=http://127.0.0.1:$PROXY KLOSETFS_CACHE_DIR="$W/setup-cache"
KS=s3://kept/store KL="$W/local-store"
# The S3 port answers before the filer behind it is ready: retry the first write.
for i in $(seq 12); do "$K" -q at $KS create 2>/dev/null && break; [ "$i" = 12 ] && exit 1; sleep 5; done
"$K" -q at "$KL" create
"$K" -q at $KS backup "$T"; "$K" -q at "$KL" backup "$T"
proxy "$DELAY"

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
walk() { # walk TAG STORE CACHE: find the tree, then rsync Documentation/ out
  drop_caches
  KLOSETFS_CACHE_DIR=$3 "$K" -q at "$2" mount "$W/kmnt" & local mp=$!
  for _ in $(seq 600); do [ -e "$W/kmnt/latest" ] && break; sleep 0.05; done
  rm -rf "$W/out"
  local a b c; a=$(date +%s.%N)
  find "$W/kmnt/latest$T" -type f > /dev/null; b=$(date +%s.%N)
  rsync -a "$W/kmnt/latest$DOC/" "$W/out/"; c=$(date +%s.%N)
  umount "$W/kmnt"; wait $mp || true
  echo "$1 $(secs "$a" "$b") $(secs "$b" "$c")"
}
floor() { # the plain tree on disk
  drop_caches; rm -rf "$W/out"
  local a b c; a=$(date +%s.%N)
  find "$T" -type f > /dev/null; b=$(date +%s.%N)
  rsync -a "$DOC/" "$W/out/"; c=$(date +%s.%N)
  echo "disk $(secs "$a" "$b") $(secs "$b" "$c")"
}
machine_facts
echo "S3: SeaweedFS through the latency proxy at $DELAY ms one way; $(find "$T" -type f | wc -l) files; Documentation/: $(find "$DOC" -type f | wc -l) files"
R="$W/results"; : > "$R"
walk s3cold $KS "$W/kept-cache" | tee -a "$R"
echo "disk cache kept: $(du -sh "$W/kept-cache" | cut -f1)"
for _ in $(seq "$ROUNDS"); do
  walk kept $KS "$W/kept-cache" | tee -a "$R"
  walk local "$KL" "$W/local-cache" | tee -a "$R"
  floor | tee -a "$R"
done
diff -r "$DOC" "$W/out" > /dev/null && echo "rsync out of the mount verified"
mean() { awk -v t="$1" -v f="$2" '$1 == t { s += $f; n++ } END { printf "%.2f", s / n }' "$R"; }
echo
echo "| mean of $ROUNDS, s | S3, cache kept | local store | plain directory (floor) | kept / local | kept / floor |"
echo "|---|---|---|---|---|---|"
for f in 2 3; do
  name=$([ $f = 2 ] && echo '`find -type f` of the tree' || echo '`rsync -a` of Documentation/ out')
  k=$(mean kept $f) l=$(mean local $f) d=$(mean disk $f)
  echo "| $name | $k | $l | $d | $(awk -v a="$k" -v b="$l" 'BEGIN{printf "%.2f", a/b}') | $(awk -v a="$k" -v b="$d" 'BEGIN{printf "%.2f", a/b}') |"
done
echo "(cold, empty cache, one run: find $(awk '$1=="s3cold"{print $2}' "$R") s, rsync $(awk '$1=="s3cold"{print $3}' "$R") s)"
