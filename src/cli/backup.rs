//! `backup`: snapshot local paths (or an S3 prefix) into the store.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use clap::Args;
use klosetfs::format::id::SnapshotId;
use klosetfs::ops::backup::{backup, BackupOptions, Progress};
use klosetfs::ops::stream_source::{backup_stream, Stream, StreamOptions};
use klosetfs::util::human_bytes;

use super::progress::Ticker;
use super::{Ctx, EXIT_OK, EXIT_PARTIAL};

/// Back up files and directories into a new snapshot.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  klosetfs at /srv/backups backup ~/Documents ~/Pictures\n  klosetfs at @home backup --tag daily --exclude '*.tmp' --exclude-file ~/.kexclude /home\n  klosetfs at /srv/backups backup s3://photos/2024\n  klosetfs at @home backup @photos    (a source: `klosetfs config source --help`)\n  pg_dump mydb | klosetfs at /srv/backups backup --stdin --stdin-name mydb.sql\n  klosetfs at /srv/backups backup --stdin-name mydb.sql --stdin-from-command -- pg_dump mydb\n\nExit status: 0 done, 3 done but some files could not be read (listed), 1 failed\n(also when --stdin-from-command's command fails: then no snapshot is written)."
)]
pub struct BackupArgs {
    /// Paths to back up, or one s3://bucket/prefix (its objects become files),
    /// or @NAME of a source (`config source create`; several may be mixed
    /// with paths, an S3 one alone); with --stdin-from-command, the command
    /// and its arguments (after `--`).
    #[arg(required_unless_present = "stdin")]
    paths: Vec<PathBuf>,
    /// Store standard input as one file (named by --stdin-name).
    #[arg(long, conflicts_with_all = ["stdin_from_command", "paths"])]
    stdin: bool,
    /// Run the command given after `--` and store what it prints as one file;
    /// if it exits non-zero, no snapshot is written.
    #[arg(long)]
    stdin_from_command: bool,
    /// The file name of --stdin / --stdin-from-command in the snapshot.
    #[arg(long, default_value = "stdin", value_name = "NAME")]
    stdin_name: String,
    /// Stay on the file systems of the given paths: mount points below them
    /// are kept as empty directories.
    #[arg(long, short = 'x')]
    one_file_system: bool,
    /// Record this time (RFC 3339, e.g. 2026-01-31T23:00:00Z) as the
    /// snapshot's, instead of now: for imports.
    #[arg(long, value_name = "RFC3339")]
    time: Option<String>,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag", short = 't')]
    tags: Vec<String>,
    /// Skip paths matching this glob (matched against full path and name; repeatable).
    #[arg(long = "exclude", short = 'e')]
    excludes: Vec<String>,
    /// Read exclude globs from a file, one per line (# comments).
    #[arg(long = "exclude-file")]
    exclude_files: Vec<PathBuf>,
    /// Host name recorded in the snapshot.
    #[arg(long)]
    host: Option<String>,
    /// Compare with this snapshot instead of the newest of the same host and paths.
    #[arg(long)]
    parent: Option<String>,
    /// Read every file again, trusting no parent snapshot.
    #[arg(long)]
    force: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, mut a: BackupArgs) -> anyhow::Result<u8> {
    let streaming = a.stdin || a.stdin_from_command;
    // `@NAME`: a named source, with its own credentials, excludes and
    // one_file_system (which then holds for the whole backup).
    let mut s3_settings = None;
    if !streaming
        && a.paths
            .iter()
            .any(|p| p.as_os_str().as_encoded_bytes().starts_with(b"@"))
    {
        let cfg = klosetfs::userconfig::UserConfig::load()?;
        let mut paths = Vec::new();
        for p in std::mem::take(&mut a.paths) {
            let Some(name) = p.to_str().and_then(|s| s.strip_prefix('@')) else {
                paths.push(p);
                continue;
            };
            let c = cfg.connector(klosetfs::userconfig::ConnectorKind::Source, name)?;
            if c.location.starts_with("s3://") {
                s3_settings = Some(c.settings);
                paths.push(PathBuf::from(c.location));
            } else {
                paths.push(klosetfs::util::expand_tilde(&c.location));
                a.excludes.extend(c.excludes);
                a.one_file_system |= c.one_file_system;
            }
        }
        a.paths = paths;
    }
    let s3_source = match a
        .paths
        .iter()
        .find(|p| p.to_string_lossy().starts_with("s3://"))
    {
        _ if streaming => None,
        Some(p) if a.paths.len() == 1 => Some(p.to_string_lossy().into_owned()),
        Some(_) => {
            anyhow::bail!("an s3:// source is backed up on its own: give it as the only path")
        }
        None => None,
    };
    let time = a
        .time
        .as_deref()
        .map(klosetfs::util::parse_time)
        .transpose()?;
    let repo = ctx.open()?;
    let stream = if a.stdin {
        Some(Stream::Stdin)
    } else if a.stdin_from_command {
        let argv: Vec<String> = a
            .paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if argv.is_empty() {
            anyhow::bail!("--stdin-from-command needs a command: `backup --stdin-from-command -- CMD ARGS...`");
        }
        Some(Stream::Command(argv))
    } else {
        None
    };
    let excludes = with_exclude_files(a.excludes, &a.exclude_files)?;
    let parent = match &a.parent {
        Some(p) => Some(repo.resolve_snapshot(p)?.0),
        None => None,
    };
    let opts = BackupOptions {
        paths: a.paths,
        tags: a.tags,
        excludes,
        exclude_paths: ctx
            .local_path()
            .and_then(|p| std::fs::canonicalize(p).ok())
            .into_iter()
            .collect(),
        host: a.host,
        parent,
        no_parent: a.force,
        // Workers upload the packs they fill; against a remote store more of
        // them keep the cores busy while uploads wait on the network.
        threads: if ctx.local_path().is_none() {
            3 * std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            0
        },
        time,
        one_file_system: a.one_file_system,
    };
    let progress = Arc::new(Progress::default());
    let ticker = {
        let p = progress.clone();
        Ticker::start(ctx.show_progress(), None, move || {
            (
                format!(
                    "{} files, {} errors",
                    p.files.load(Ordering::Relaxed),
                    p.errors.load(Ordering::Relaxed)
                ),
                p.bytes.load(Ordering::Relaxed),
            )
        })
    };
    let r = match (stream, s3_source) {
        (Some(stream), _) => backup_stream(
            &repo,
            stream,
            &StreamOptions {
                name: a.stdin_name.clone(),
                tags: opts.tags.clone(),
                host: opts.host.clone(),
                time,
            },
            &progress,
        ),
        (None, s3_source) => match s3_source {
            #[cfg(not(feature = "s3"))]
            Some(loc) => Err(klosetfs::Error::InvalidInput(format!(
                "{loc}: this klosetfs was built without S3 support"
            ))),
            #[cfg(feature = "s3")]
            Some(loc) => {
                let mut o = klosetfs::ops::connector::s3_options(&loc)?;
                if let Some(settings) = &s3_settings {
                    o.apply_settings(settings);
                }
                let bucket = klosetfs::storage::S3Bucket::connect(&o)?;
                let prefix = klosetfs::ops::connector::key_prefix(&o);
                let so = klosetfs::ops::connector::s3_source::SourceOptions {
                    location: loc,
                    tags: opts.tags.clone(),
                    host: opts.host.clone(),
                    parent: opts.parent,
                    no_parent: opts.no_parent,
                    time,
                };
                klosetfs::ops::connector::s3_source::backup(&repo, &bucket, &prefix, &so, &progress)
            }
            None => backup(&repo, &opts, &progress),
        },
    };
    drop(ticker);
    let r = r?;
    for (path, e) in &r.errors {
        eprintln!("klosetfs: skipped {path}: {e}");
    }
    let s = &r.snapshot.summary;
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&summary_json(&r.id, &r.snapshot, &r.errors))?
        );
    } else if !ctx.global.quiet {
        outln!(
            "snapshot {} saved: {} files, {} dirs, {} ({} new, {} stored) in {:.1}s{}",
            r.id.short(),
            s.files,
            s.dirs,
            human_bytes(s.bytes),
            human_bytes(s.new_bytes),
            human_bytes(s.stored_bytes),
            s.duration_ns as f64 / 1e9,
            if r.errors.is_empty() {
                String::new()
            } else {
                format!(", {} entries skipped", r.errors.len())
            }
        );
    }
    Ok(if r.errors.is_empty() {
        EXIT_OK
    } else {
        EXIT_PARTIAL
    })
}

fn summary_json(
    id: &SnapshotId,
    snap: &klosetfs::format::snapshot::Snapshot,
    errors: &[(String, String)],
) -> serde_json::Value {
    let s = &snap.summary;
    serde_json::json!({
        "id": id.to_hex(),
        "time": klosetfs::util::format_time(snap.time),
        "files": s.files,
        "dirs": s.dirs,
        "others": s.others,
        "bytes": s.bytes,
        "new_bytes": s.new_bytes,
        "stored_bytes": s.stored_bytes,
        "new_blobs": s.new_blobs,
        "duration_s": s.duration_ns as f64 / 1e9,
        "errors": errors.iter().map(|(p, e)| serde_json::json!({"path": p, "error": e})).collect::<Vec<_>>(),
    })
}

/// `globs` and those of each `--exclude-file` (one per line, `#` comments).
pub fn with_exclude_files(
    mut globs: Vec<String>,
    files: &[PathBuf],
) -> anyhow::Result<Vec<String>> {
    for f in files {
        let body = std::fs::read_to_string(f)
            .map_err(|e| anyhow::anyhow!("reading exclude file {}: {e}", f.display()))?;
        globs.extend(
            body.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    Ok(globs)
}
