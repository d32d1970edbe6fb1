//! Writes a store with one generated snapshot of DIRS directories × FILES
//! files whose contents come from POOL distinct chunks (default 1,000; see
//! `klosetfs::ops::generate`), for `scripts/bench-scale.sh`.
//!
//! Usage: KLOSETFS_PASSPHRASE=... cargo run --release --example gen_store -- STORE DIRS FILES [POOL]

use std::sync::Arc;

use klosetfs::format::keyfile::KdfParams;
use klosetfs::repo::Repo;
use klosetfs::storage::local::LocalStorage;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() == 4 || args.len() == 5,
        "usage: gen_store STORE DIRS FILES [POOL]"
    );
    let (dirs, files): (u64, u64) = (args[2].parse()?, args[3].parse()?);
    let pool: u64 = args.get(4).map_or(Ok(1000), |a| a.parse())?;
    let pass = std::env::var("KLOSETFS_PASSPHRASE")?;
    let storage = Arc::new(LocalStorage::create(&args[1])?);
    let repo = Arc::new(Repo::create(
        storage,
        Some(pass.as_bytes()),
        KdfParams::default(),
    )?);
    let id = klosetfs::ops::generate::generate(&repo, dirs, files, pool)?;
    println!("snapshot {} with {} files", id.short(), dirs * files);
    Ok(())
}
