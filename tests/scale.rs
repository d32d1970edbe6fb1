//! The read-only mount at scale, not timed: walking a generated store far
//! larger than the mount's configured memory (200k files, 1,000 per
//! directory) keeps the daemon's RSS under its bound, and entries handed
//! back to the kernel come back with the same inode numbers and content.

mod common;
use common::*;

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use klosetfs::format::keyfile::KdfParams;
use klosetfs::repo::Repo;
use klosetfs::storage::local::LocalStorage;

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn walking_a_big_store_keeps_the_mount_in_its_memory_bound() {
    let env = Env::new();
    let storage = Arc::new(LocalStorage::create(&env.store).unwrap());
    let kdf = KdfParams {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    };
    let repo = Arc::new(Repo::create(storage, Some(PASS.as_bytes()), kdf).unwrap());
    klosetfs::ops::generate::generate(&repo, 200, 1000, 1000).unwrap();
    drop(repo);

    let mnt = env.path("mnt");
    let m = Mounted::start(
        &env,
        &mnt,
        &[
            &"mount",
            &"--max-inodes",
            &"20000",
            &"--tree-cache",
            &"8M",
            &"--cache-size",
            &"8M",
            &mnt,
        ],
        600,
    );
    let first = mnt.join("latest/gen/dir-000000/file-0000007.dat");
    let ino = std::fs::metadata(&first).unwrap().ino();
    let content = std::fs::read(&first).unwrap();
    let before = rss_kib(m.pid());
    let mut files = 0;
    for d in std::fs::read_dir(mnt.join("latest/gen")).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let md = f.unwrap().metadata().unwrap();
            assert!(md.is_file());
            files += 1;
        }
    }
    assert_eq!(files, 200_000);
    // Give the trimmer a moment to hand the oldest entries back.
    std::thread::sleep(std::time::Duration::from_millis(600));
    let after = rss_kib(m.pid());
    eprintln!("mount RSS: {before} KiB before the walk, {after} KiB after 200k files");
    // 20k entries, 8 MiB of trees, 8 MiB of chunks, 16 MiB of listings and
    // the process itself; without the cap the walk alone holds ~170 MiB.
    assert!(after < 100 << 10, "mount RSS {after} KiB after the walk");
    // The first file was handed back and comes back the same.
    assert_eq!(std::fs::metadata(&first).unwrap().ino(), ino);
    assert_eq!(std::fs::read(&first).unwrap(), content);
}
