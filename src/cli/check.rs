//! `check`: verify the store; `--read-data` reads every byte; `--repair`
//! rebuilds the index from pack headers.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use clap::Args;
use klosetfs::ops::check::{check, CheckProgress};
use klosetfs::ops::repair::repair_index;

use super::progress::Ticker;
use super::{Ctx, EXIT_OK, EXIT_PARTIAL};

/// Verify the store's structure (and with --read-data, every blob).
#[derive(Args)]
#[command(
    after_help = "Examples:\n  klosetfs at /srv/backups check\n  klosetfs at /srv/backups check --read-data\n\nExit status: 0 no damage, 3 damage found (each damaged object is named), 1 could not check."
)]
pub struct CheckArgs {
    /// Read and verify every pack in full.
    #[arg(long)]
    read_data: bool,
    /// Rewrite a damaged or missing copy of the config or of a key file from
    /// its intact twin, then rebuild the index from the pack headers before
    /// checking. A pack whose header is damaged is rewritten from the old
    /// index (each blob verified); no entry that still finds a readable blob
    /// is dropped.
    #[arg(long)]
    repair: bool,
    /// Print the report as JSON (snapshots, trees, packs, blobs, errors,
    /// warnings, details).
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, a: CheckArgs) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    if a.repair {
        // The config and keys first: a damaged or missing copy is rewritten
        // from its intact twin (and said).
        for line in klosetfs::unlock::repair_root(&**repo.storage())? {
            outln!("repair: {line}");
        }
        let r = repair_index(&repo)?;
        for line in r
            .missing
            .iter()
            .chain(&r.damaged_blobs)
            .chain(&r.packs_left)
        {
            outln!("repair: {line}");
        }
        if !ctx.global.quiet {
            outln!(
                "index rebuilt: {} packs from their headers, {} damaged headers rewritten from the old index{}",
                r.packs_indexed,
                r.packs_rewritten,
                if r.kept_entries > 0 {
                    format!(", {} verified entries kept that headers omit", r.kept_entries)
                } else {
                    String::new()
                }
            );
        }
    }
    let total = repo
        .storage()
        .list(klosetfs::storage::Kind::Pack)?
        .iter()
        .map(|p| p.1)
        .sum();
    let progress = Arc::new(CheckProgress::default());
    let ticker = {
        let p = progress.clone();
        Ticker::start(ctx.show_progress() && a.read_data, Some(total), move || {
            (
                format!("{} packs", p.packs.load(Ordering::Relaxed)),
                p.bytes.load(Ordering::Relaxed),
            )
        })
    };
    let r = check(&repo, a.read_data, &progress);
    drop(ticker);
    let r = r?;
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "snapshots": r.snapshots, "trees": r.trees, "packs": r.packs, "blobs": r.blobs,
                "errors": r.errors, "warnings": r.warnings, "details": r.details,
            }))?
        );
    } else {
        for w in &r.warnings {
            eprintln!("warning: {w}");
        }
        for e in &r.errors {
            outln!("error: {e}");
        }
        if ctx.global.verbose > 0 {
            for d in &r.details {
                outln!("  {d}");
            }
        }
        if !ctx.global.quiet {
            outln!(
                "checked {} snapshots, {} trees, {} packs{}: {}",
                r.snapshots,
                r.trees,
                r.packs,
                if a.read_data { " (all data read)" } else { "" },
                if r.errors.is_empty() {
                    "no errors".to_string()
                } else {
                    format!("{} errors", r.errors.len())
                }
            );
        }
    }
    Ok(if r.errors.is_empty() {
        EXIT_OK
    } else {
        EXIT_PARTIAL
    })
}
