#!/usr/bin/env bash
# The main job on a fresh machine, no S3 needed: build, create an encrypted
# store in a local directory, back up a sample tree, list it, restore it and
# compare; then copy files into a writable mount (unmounting commits them as
# a snapshot) and browse both snapshots through a read-only mount.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
K="$PWD/target/release/klosetfs"
work=$(mktemp -d /tmp/klosetfs-demo.XXXXXX)
export KLOSETFS_PASSPHRASE="demo passphrase"
store="$work/store"
sample="$work/sample"
mkdir -p "$sample"
cp -a src docs README.md "$sample/"
echo "== create";  "$K" at "$store" create
echo "== backup";  "$K" at "$store" backup --tag demo "$sample"
echo "== ls";      "$K" at "$store" ls
"$K" at "$store" ls -l "latest:$sample"
echo "== restore"; "$K" at "$store" restore -to "$work/restored" "latest:$sample"
diff -r "$sample" "$work/restored" && echo "restored tree is identical"
echo "== check";   "$K" at "$store" check --read-data
echo "== info";    "$K" at "$store" info
if [ -e /dev/fuse ] && "$K" help mount >/dev/null 2>&1; then
  command -v fusermount3 >/dev/null || { apt-get update -qq && apt-get install -y -qq fuse3 >/dev/null; }
  win="$work/in"; mnt="$work/mnt"; mkdir -p "$win" "$mnt"
  pids=()
  trap 'umount "$win" "$mnt" 2>/dev/null; kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null' EXIT
  echo "== mount --writable: copy files in, unmount to commit them"
  "$K" at "$store" mount --writable --tag demo-copy "$win" & pids+=($!)
  for _ in $(seq 50); do mountpoint -q "$win" && break; sleep 0.1; done
  cp -a "$sample/docs" "$win/"
  umount "$win"; wait "${pids[0]}"
  "$K" at "$store" ls
  echo "== mount (read-only): both snapshots, browsed with ls, find and diff"
  "$K" at "$store" mount "$mnt" & pids+=($!)
  for _ in $(seq 50); do mountpoint -q "$mnt" && break; sleep 0.1; done
  ls -l "$mnt" "$mnt/snapshots"
  find "$mnt/latest/" -maxdepth 2 | head -20
  diff -r "$sample/docs" "$mnt/latest/docs" && echo "the copied files are in the newest snapshot, identical"
fi
echo "demo store left in $store"
