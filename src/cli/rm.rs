//! `rm` (forget snapshots) and `unlock` (break stale locks).

use clap::Args;
use klosetfs::storage::Kind;

use super::{Ctx, EXIT_OK};

/// Remove snapshots (their data is freed by `prune`).
#[derive(Args)]
#[command(
    after_help = "Example:\n  klosetfs at /srv/backups rm 3fa2c1 9bd01e && klosetfs at /srv/backups prune"
)]
pub struct RmArgs {
    #[arg(required = true)]
    snapshots: Vec<String>,
}

pub fn run(ctx: &Ctx, a: RmArgs) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    let _lock = klosetfs::lock::acquire(repo.storage(), repo.keys(), false)?;
    // Resolve all first, so one bad prefix removes nothing.
    let ids: Vec<_> = a
        .snapshots
        .iter()
        .map(|s| repo.resolve_snapshot(s).map(|r| r.0))
        .collect::<Result<_, _>>()?;
    for id in ids {
        repo.storage().delete(Kind::Snapshot, &id.to_hex())?;
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
    let n = klosetfs::lock::break_locks(&**repo.storage(), repo.keys(), a.all)?;
    if !ctx.global.quiet {
        outln!("removed {n} lock(s)");
    }
    Ok(EXIT_OK)
}
