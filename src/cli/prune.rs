//! `prune`: reclaim space held by blobs no snapshot uses.

use clap::Args;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use klosetfs::ops::prune::{prune, PruneOptions, PruneProgress, PruneReport};
use klosetfs::repo::Repo;

use super::progress::Ticker;
use klosetfs::util::human_bytes;

use super::{Ctx, EXIT_OK};

/// Delete unreferenced data and repack partly-used packs.
#[derive(Args)]
#[command(
    after_help = "Example:\n  klosetfs at /srv/backups rm 3fa2c1 && klosetfs at /srv/backups prune --dry-run"
)]
pub struct PruneArgs {
    /// Only report what would be done.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, a: PruneArgs) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    let r = execute(ctx, &repo, a.dry_run)?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&json(&r, a.dry_run))?);
    } else if !ctx.global.quiet {
        outln!("{}", line(&r, a.dry_run));
    }
    Ok(EXIT_OK)
}

/// Prunes with a progress line on a terminal (also for `rm --prune`).
pub fn execute(ctx: &Ctx, repo: &Repo, dry_run: bool) -> anyhow::Result<PruneReport> {
    let progress = Arc::new(PruneProgress::default());
    let ticker = {
        let p = progress.clone();
        Ticker::start(ctx.show_progress(), None, move || {
            (
                format!("{} trees read, repacking", p.trees.load(Ordering::Relaxed)),
                p.bytes.load(Ordering::Relaxed),
            )
        })
    };
    let opts = PruneOptions {
        dry_run,
        ..Default::default()
    };
    let r = prune(repo, &opts, &progress);
    drop(ticker);
    Ok(r?)
}

pub fn json(r: &PruneReport, dry_run: bool) -> serde_json::Value {
    serde_json::json!({
        "dry_run": dry_run, "packs_deleted": r.packs_deleted, "orphan_packs": r.orphan_packs,
        "packs_repacked": r.packs_repacked, "packs_written": r.packs_written,
        "blobs_removed": r.blobs_removed, "bytes_freed": r.bytes_freed,
        "temporaries_removed": r.temporaries,
    })
}

pub fn line(r: &PruneReport, dry_run: bool) -> String {
    format!(
        "{}{} packs deleted ({} left by interrupted backups), {} repacked into {}, {} blobs removed, {} partial objects removed, {} freed",
        if dry_run { "would be: " } else { "" },
        r.packs_deleted,
        r.orphan_packs,
        r.packs_repacked,
        r.packs_written,
        r.blobs_removed,
        r.temporaries,
        human_bytes(r.bytes_freed)
    )
}
