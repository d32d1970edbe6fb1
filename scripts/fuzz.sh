#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets, one per decoder of stored
# bytes) for SECONDS each, two at a time, seeded from the committed corpus.
#   scripts/fuzz.sh [SECONDS]      default 60 (CI's short run); soak: 1800
# FUZZ_SEED=N fixes libFuzzer's seed (CI uses 1, so a red run reproduces);
# without it every run explores differently. New inputs go to a scratch
# folder, not into the committed corpus (add real finds by hand, minimized
# with `cargo +nightly fuzz cmin`). A crash fails the script and leaves its
# input under fuzz/artifacts/<target>/.
# No sanitizer (`-s none`): the crate has no `unsafe`, and AddressSanitizer
# made the build a third slower and every run slower; the allocation bound
# `-malloc_limit_mb` gave is fuzz/src/lib.rs's capped allocator now, and
# `-rss_limit_mb` needs no sanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz: no nightly toolchain on this machine; skipping (the corpus replay in cargo test still runs)" >&2
  exit 0
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet

targets=$(ls fuzz/fuzz_targets | sed 's/\.rs$//')
# FUZZ_DENY_WARNINGS=1 (CI): a warning in the build (the library without the
# S3 feature, as the targets link it) fails it. cargo-fuzz appends RUSTFLAGS
# to its own; dependencies' warnings stay capped by cargo.
if [ -n "${FUZZ_DENY_WARNINGS:-}" ]; then
  export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-D warnings"
fi
cargo +nightly fuzz build -O -s none >/dev/null

scratch=$(mktemp -d /tmp/klosetfs-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
seed_args=()
[ -n "${FUZZ_SEED:-}" ] && seed_args=(-seed="$FUZZ_SEED")

run_one() {
  local t=$1
  mkdir -p "$scratch/$t"
  # -rss_limit_mb and the capped allocator: a decoder that allocates what
  # the bytes claim instead of what they hold is a failure, not a slow run.
  if cargo +nightly fuzz run -O -s none "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
      -max_total_time="$secs" -rss_limit_mb=1024 \
      -timeout=10 -print_final_stats=1 "${seed_args[@]}" \
      >"$scratch/$t.log" 2>&1; then
    echo "fuzz $t: ok, $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$t.log" | grep -o '[0-9]*$') runs in ${secs}s"
  else
    echo "fuzz $t: FAILED" >&2
    tail -40 "$scratch/$t.log" >&2
    return 1
  fi
}

status=0
pids=()
for t in $targets; do
  run_one "$t" &
  pids+=($!)
  if [ ${#pids[@]} -ge 2 ]; then
    wait "${pids[0]}" || status=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
