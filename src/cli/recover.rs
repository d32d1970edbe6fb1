//! `recover`: commit what interrupted writable mounts left in their spools.

use std::path::PathBuf;

use clap::Args;
use klosetfs::writable::recover_dir;

use super::{Ctx, EXIT_OK};

/// Commit files closed in writable mounts that died before committing.
#[derive(Args)]
#[command(
    after_help = "Example:\n  klosetfs at /srv/backups recover\n\nThe next writable mount at the same mountpoint does this by itself."
)]
pub struct RecoverArgs {
    /// A spool directory (default: every spool of this store under <cache dir>/klosetfs/spool).
    #[arg(long)]
    spool: Option<PathBuf>,
}

pub fn run(ctx: &Ctx, a: RecoverArgs) -> anyhow::Result<u8> {
    let repo = ctx.open_indexed()?;
    let _lock = klosetfs::lock::acquire(repo.storage(), repo.keys(), false)?;
    let spools: Vec<PathBuf> = match a.spool {
        Some(s) => vec![s],
        None => {
            let id = &repo.config().id;
            let root = dirs::cache_dir()
                .unwrap_or_else(std::env::temp_dir)
                .join("klosetfs/spool")
                .join(&id[..16.min(id.len())]);
            std::fs::read_dir(&root)
                .map(|rd| rd.flatten().map(|e| e.path()).collect())
                .unwrap_or_default()
        }
    };
    let mut n = 0;
    for s in spools {
        if let Some(id) = recover_dir(&repo, &s)? {
            println!("snapshot {} (recovered from {})", id.to_hex(), s.display());
            n += 1;
        }
    }
    if n == 0 && !ctx.global.quiet {
        eprintln!("klosetfs: nothing to recover");
    }
    Ok(EXIT_OK)
}
