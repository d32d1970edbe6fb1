//! `sync to|from|with`: snapshots copied between this store and another.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use clap::{Args, Subcommand};
use klosetfs::format::id::SnapshotId;
use klosetfs::ops::sync::{copy_snapshots, missing, SyncProgress, SyncReport};
use klosetfs::repo::Repo;
use klosetfs::util::human_bytes;

use super::progress::Ticker;
use super::{Ctx, EXIT_OK};

/// Copy snapshots to, from, or both ways with another store.
#[derive(Args)]
#[command(after_help = "Examples:
  klosetfs at /srv/backups sync to s3://offsite/backups
  klosetfs at @home sync to @offsite latest
  klosetfs at /srv/backups sync from @laptop
  klosetfs at @home sync with @offsite

The other store is a path, s3://bucket/prefix or @name. Its passphrase comes
from --other-passphrase-file, --other-passphrase-command,
KLOSETFS_OTHER_PASSPHRASE, its @name settings, else KLOSETFS_PASSPHRASE (the
same as this store's), else a prompt. Only snapshots the other side lacks are
copied (a copy remembers the snapshot it copies, so a sync back does not copy
it again), and only data the other side lacks is stored: everything is
decrypted with one store's keys and sealed with the other's. A sync that is
interrupted leaves both stores consistent; run it again to finish.")]
pub struct SyncArgs {
    #[command(subcommand)]
    cmd: SyncCmd,
    /// Passphrase of the other store: the first line of this file.
    #[arg(long, global = true, value_name = "FILE")]
    other_passphrase_file: Option<PathBuf>,
    /// Passphrase of the other store: the first line this command prints.
    #[arg(long, global = true, value_name = "CMD")]
    other_passphrase_command: Option<String>,
}

#[derive(Subcommand)]
enum SyncCmd {
    /// Copy this store's snapshots (all, or the ones named) to OTHER.
    #[command(
        after_help = "Examples:\n  klosetfs at /srv/backups sync to s3://bucket/offsite\n  klosetfs at /srv/backups sync to @offsite latest"
    )]
    To {
        /// The destination: a path, s3://bucket/prefix or @name.
        other: String,
        /// Snapshots to copy (ids, prefixes, `latest`); all when none.
        snapshots: Vec<String>,
    },
    /// Copy OTHER's snapshots (all, or the ones named) into this store.
    #[command(after_help = "Example:\n  klosetfs at /srv/backups sync from /mnt/usb/backups")]
    From {
        /// The source: a path, s3://bucket/prefix or @name.
        other: String,
        /// Snapshots of OTHER to copy; all when none.
        snapshots: Vec<String>,
    },
    /// Copy both ways, so both stores end up with every snapshot.
    #[command(after_help = "Example:\n  klosetfs at /srv/backups sync with @offsite")]
    With {
        /// The other store: a path, s3://bucket/prefix or @name.
        other: String,
    },
}

pub fn run(ctx: &Ctx, a: SyncArgs) -> anyhow::Result<u8> {
    let (other, snaps) = match &a.cmd {
        SyncCmd::To { other, snapshots } | SyncCmd::From { other, snapshots } => {
            (other, snapshots.clone())
        }
        SyncCmd::With { other } => (other, Vec::new()),
    };
    let octx = ctx.other(
        other,
        a.other_passphrase_file.clone(),
        a.other_passphrase_command.clone(),
    );
    let here = ctx.open()?;
    let there = octx.open()?;
    match a.cmd {
        SyncCmd::To { .. } => {
            one_way(ctx, &here, &there, &snaps, "to", other)?;
        }
        SyncCmd::From { .. } => {
            one_way(ctx, &there, &here, &snaps, "from", other)?;
        }
        SyncCmd::With { .. } => {
            one_way(ctx, &here, &there, &[], "to", other)?;
            one_way(ctx, &there, &here, &[], "from", other)?;
        }
    }
    Ok(EXIT_OK)
}

fn one_way(
    ctx: &Ctx,
    src: &Arc<Repo>,
    dst: &Arc<Repo>,
    specs: &[String],
    dir: &str,
    other: &str,
) -> anyhow::Result<SyncReport> {
    let only: Option<Vec<SnapshotId>> = if specs.is_empty() {
        None
    } else {
        Some(
            specs
                .iter()
                .map(|s| src.resolve_snapshot(s).map(|r| r.0))
                .collect::<Result<_, _>>()?,
        )
    };
    let (list, present) = missing(src, dst, only.as_deref())?;
    let progress = Arc::new(SyncProgress::default());
    let total = list.len();
    let ticker = {
        let p = progress.clone();
        Ticker::start(ctx.show_progress(), None, move || {
            (
                format!(
                    "{}/{total} snapshots copied",
                    p.snapshots.load(Ordering::Relaxed)
                ),
                p.bytes.load(Ordering::Relaxed),
            )
        })
    };
    let r = copy_snapshots(src, dst, &list, &progress);
    drop(ticker);
    let mut r = r?;
    r.present = present;
    if !ctx.global.quiet {
        for (from, to) in &r.copied {
            outln!("copied snapshot {} as {}", from.short(), to.short());
        }
        outln!(
            "sync {dir} {other}: {} snapshot(s) copied, {} already there; {} new blobs ({}) stored",
            r.copied.len(),
            r.present,
            r.new_blobs,
            human_bytes(r.new_bytes)
        );
    }
    Ok(r)
}
