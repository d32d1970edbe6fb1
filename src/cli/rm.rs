//! `rm` (forget snapshots) and `unlock` (break stale locks).

use clap::Args;
use klosetfs::ops::remove::remove_snapshots;

use super::{Ctx, EXIT_OK};

/// Remove snapshots (their data is freed by `prune`).
#[derive(Args)]
#[command(
    after_help = "Example:\n  klosetfs at /srv/backups rm 3fa2c1 9bd01e && klosetfs at /srv/backups prune"
)]
pub struct RmArgs {
    /// Snapshots to remove: ids, unique id prefixes, or `latest`.
    #[arg(required = true)]
    snapshots: Vec<String>,
}

pub fn run(ctx: &Ctx, a: RmArgs) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    for id in remove_snapshots(&repo, &a.snapshots)? {
        if !ctx.global.quiet {
            outln!("removed snapshot {}", id.short());
        }
    }
    Ok(EXIT_OK)
}

/// Remove stale locks (from killed processes), or all with --all.
#[derive(Args)]
#[command(after_help = "Example:\n  klosetfs at /srv/backups unlock")]
pub struct UnlockArgs {
    /// Remove every lock, even live ones.
    #[arg(long)]
    all: bool,
}

pub fn unlock(ctx: &Ctx, a: UnlockArgs) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    let n = klosetfs::format::lock::break_locks(&**repo.storage(), repo.keys(), a.all)?;
    if !ctx.global.quiet {
        outln!("removed {n} lock(s)");
    }
    Ok(EXIT_OK)
}
