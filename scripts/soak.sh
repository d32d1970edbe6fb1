#!/usr/bin/env bash
# The long reliability run: kill -9 a real backup of a kernel tree at random
# moments, many times; after each kill the store must open, `check --read-data`
# must pass, the first snapshot must restore byte-exact, and the next backup
# must succeed. Usage: scripts/soak.sh [ROUNDS]   (default 20)
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"
need_tools
ROUNDS=${1:-20}
T1=$(kernel_tree "$V1"); T2=$(kernel_tree "$V2")
W="$BENCH_DIR/soak"; rm -rf "$W"; mkdir -p "$W"
"$K" -q at "$W/s" create
"$K" -q at "$W/s" backup "$T1"
first=$("$K" at "$W/s" ls --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
for i in $(seq "$ROUNDS"); do
  delay=$(awk -v s="$RANDOM" 'BEGIN { srand(s); printf "%.2f", 0.2 + rand() * 5 }')
  "$K" -q at "$W/s" backup --force "$T2" & pid=$!
  sleep "$delay"; kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  "$K" -q at "$W/s" unlock --all
  "$K" -q at "$W/s" check --read-data
  rm -rf "$W/out"; "$K" -q at "$W/s" restore -to "$W/out" "${first:0:12}:$T1"
  diff -r "$T1" "$W/out" >/dev/null
  echo "round $i: killed after ${delay}s; store checks clean and the first snapshot restores"
done
"$K" -q at "$W/s" backup "$T2"
"$K" -q at "$W/s" check --read-data
echo "soak: $ROUNDS kills, nothing lost"
# The long fuzz run: every decoder, random seeds.
bash "$ROOT/scripts/fuzz.sh" "${FUZZ_SOAK_SECONDS:-600}"
