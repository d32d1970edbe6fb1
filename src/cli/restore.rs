//! `restore`: a snapshot (or a path in it) back into a local directory.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use clap::Args;
use klosetfs::ops::restore::{restore, RestoreOptions, RestoreProgress};
use klosetfs::util::human_bytes;

use super::progress::Ticker;
use super::spec::resolve;
use super::{Ctx, EXIT_OK, EXIT_PARTIAL};

/// Restore SNAP[:PATH] into a directory.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  klosetfs at /srv/backups restore -to /tmp/out latest\n  klosetfs at /srv/backups restore -to ~/Documents 3fa2c1:/home/me/Documents\n  klosetfs at /srv/backups restore -to s3://bucket/restored latest:/srv/www\n  klosetfs at @home restore -to @restored latest:/srv/www    (a destination: `klosetfs config destination --help`)\n\nA directory's contents land in the target; a file lands inside it.\nExit status: 0 done, 3 done but some files were damaged or could not be written (listed)."
)]
pub struct RestoreArgs {
    /// Target directory, s3://bucket/prefix, or @NAME of a destination
    /// (`config destination create`) (also `-to`).
    #[arg(long = "to", alias = "target", value_name = "DIR")]
    to: PathBuf,
    /// SNAP[:PATH]
    source: OsString,
    /// Do not set owners even when running as root.
    #[arg(long)]
    no_owners: bool,
    /// Skip files already present with the same size and mtime.
    #[arg(long)]
    skip_existing: bool,
    /// Files restored at once [default: one per core, 8 from a remote store].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, mut a: RestoreArgs) -> anyhow::Result<u8> {
    // `-to @NAME`: a named destination, with its own credentials.
    let dest = match a.to.to_str().and_then(|s| s.strip_prefix('@')) {
        Some(name) => {
            let d = klosetfs::userconfig::UserConfig::load()?
                .connector(klosetfs::userconfig::ConnectorKind::Destination, name)?;
            if !d.location.starts_with("s3://") {
                a.to = klosetfs::util::expand_tilde(&d.location);
            }
            Some(d)
        }
        None => None,
    };
    let repo = ctx.open_indexed()?;
    let t = resolve(&repo, &a.source)?;
    let mut opts = RestoreOptions::default();
    opts.owners &= !a.no_owners;
    opts.skip_existing = a.skip_existing;
    // Keep several range reads in flight against a remote store.
    opts.threads = a
        .threads
        .unwrap_or(if ctx.local_path().is_none() { 8 } else { 0 });
    let total = if t.node.is_dir() && t.path == b"/" {
        Some(t.snapshot.summary.bytes)
    } else {
        None
    };
    let progress = Arc::new(RestoreProgress::default());
    let ticker = {
        let p = progress.clone();
        Ticker::start(ctx.show_progress(), total, move || {
            (
                format!("{} files", p.files.load(Ordering::Relaxed)),
                p.bytes.load(Ordering::Relaxed),
            )
        })
    };
    let started = std::time::Instant::now();
    let to = a.to.to_string_lossy().into_owned();
    let r = if to.starts_with("s3://") {
        s3_restore(&repo, &t.node, &to, &Default::default(), &progress)
    } else if let Some(d) = &dest {
        if d.location.starts_with("s3://") {
            s3_restore(&repo, &t.node, &d.location, &d.settings, &progress)
        } else {
            restore(&repo, &t.node, &a.to, &opts, &progress)
        }
    } else {
        restore(&repo, &t.node, &a.to, &opts, &progress)
    };
    drop(ticker);
    let r = r?;
    for (p, e) in &r.damaged {
        eprintln!("klosetfs: damaged: {p}: {e}");
    }
    for (p, e) in &r.errors {
        eprintln!("klosetfs: error: {p}: {e}");
    }
    if a.json {
        let list = |v: &[(String, String)]| -> Vec<serde_json::Value> {
            v.iter()
                .map(|(p, e)| serde_json::json!({"path": p, "error": e}))
                .collect()
        };
        let v = serde_json::json!({
            "files": r.files, "dirs": r.dirs, "others": r.others, "bytes": r.bytes,
            "target": a.to.display().to_string(), "duration_s": started.elapsed().as_secs_f64(),
            "damaged": list(&r.damaged), "errors": list(&r.errors),
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else if !ctx.global.quiet {
        outln!(
            "restored {} files, {} dirs, {} other ({}) to {} in {:.1}s",
            r.files,
            r.dirs,
            r.others,
            human_bytes(r.bytes),
            a.to.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(if r.damaged.is_empty() && r.errors.is_empty() {
        EXIT_OK
    } else {
        EXIT_PARTIAL
    })
}

/// `restore -to s3://bucket/prefix`: every file as an object under the prefix.
#[cfg(feature = "s3")]
fn s3_restore(
    repo: &klosetfs::repo::Repo,
    node: &klosetfs::format::tree::Node,
    to: &str,
    settings: &std::collections::BTreeMap<String, String>,
    progress: &RestoreProgress,
) -> klosetfs::Result<klosetfs::ops::restore::RestoreReport> {
    let mut o = klosetfs::ops::connector::s3_options(to)?;
    o.apply_settings(settings);
    let bucket = klosetfs::storage::S3Bucket::connect(&o)?;
    bucket.ensure_exists()?;
    let prefix = klosetfs::ops::connector::key_prefix(&o);
    klosetfs::ops::connector::s3_dest::restore(repo, node, &bucket, &prefix, progress)
}

#[cfg(not(feature = "s3"))]
fn s3_restore(
    _repo: &klosetfs::repo::Repo,
    _node: &klosetfs::format::tree::Node,
    to: &str,
    _settings: &std::collections::BTreeMap<String, String>,
    _progress: &RestoreProgress,
) -> klosetfs::Result<klosetfs::ops::restore::RestoreReport> {
    Err(klosetfs::Error::InvalidInput(format!(
        "{to}: this klosetfs was built without S3 support"
    )))
}
