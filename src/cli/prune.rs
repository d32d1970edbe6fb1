//! `prune`: reclaim space held by blobs no snapshot uses.

use clap::Args;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use klosetfs::ops::prune::{prune, PruneOptions, PruneProgress};

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
        dry_run: a.dry_run,
        ..Default::default()
    };
    let r = prune(&repo, &opts, &progress);
    drop(ticker);
    let r = r?;
    if a.json {
        let v = serde_json::json!({
            "dry_run": a.dry_run, "packs_deleted": r.packs_deleted, "orphan_packs": r.orphan_packs,
            "packs_repacked": r.packs_repacked, "packs_written": r.packs_written,
            "blobs_removed": r.blobs_removed, "bytes_freed": r.bytes_freed,
            "temporaries_removed": r.temporaries,
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else if !ctx.global.quiet {
        outln!(
            "{}{} packs deleted ({} left by interrupted backups), {} repacked into {}, {} blobs removed, {} partial objects removed, {} freed",
            if a.dry_run { "would be: " } else { "" },
            r.packs_deleted,
            r.orphan_packs,
            r.packs_repacked,
            r.packs_written,
            r.blobs_removed,
            r.temporaries,
            human_bytes(r.bytes_freed)
        );
    }
    Ok(EXIT_OK)
}
