//! `recover`: commit what interrupted writable mounts left in their spools.

use std::path::PathBuf;

use clap::Args;
use klosetfs::writable::recover;

use super::{Ctx, EXIT_OK};

/// Commit files closed in writable mounts that died before committing.
#[derive(Args)]
#[command(
    after_help = "Example:\n  klosetfs at /srv/backups recover\n\nThe next writable mount at the same mountpoint does this by itself."
)]
pub struct RecoverArgs {
    /// A spool directory (default: every spool of this store under <cache dir>/spool, see --cache-dir).
    #[arg(long)]
    spool: Option<PathBuf>,
}

pub fn run(ctx: &Ctx, a: RecoverArgs) -> anyhow::Result<u8> {
    let repo = ctx.open_indexed()?;
    let spools: Vec<PathBuf> = match a.spool {
        Some(s) => vec![s],
        None => {
            let root = super::mount::spools_of(ctx, &repo.config().id);
            std::fs::read_dir(&root)
                .map(|rd| rd.flatten().map(|e| e.path()).collect())
                .unwrap_or_default()
        }
    };
    // Read before recovery empties the spools.
    let was_at: Vec<Option<String>> = spools
        .iter()
        .map(|s| super::mount::spool_mountpoint(s))
        .collect();
    let recovered = recover(&repo, &spools)?;
    let n = recovered.len();
    for (s, id) in recovered {
        let at = spools
            .iter()
            .position(|x| *x == s)
            .and_then(|i| was_at[i].clone());
        outln!(
            "snapshot {} (recovered from {}{})",
            id.to_hex(),
            s.display(),
            at.map(|m| format!(", the spool of the mount at {m}: check that no files were written there after it died"))
                .unwrap_or_default()
        );
    }
    if n == 0 && !ctx.global.quiet {
        eprintln!("klosetfs: nothing to recover");
    }
    Ok(EXIT_OK)
}
