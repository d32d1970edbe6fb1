//! `mount`: the store (or one snapshot path) as a read-only filesystem.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use klosetfs::mount::readonly::ReadOnlyFs;
use klosetfs::mount::{check_mountpoint, serve, MountConfig};
use klosetfs::view::vfs::{Vfs, VfsOptions};

use super::spec::resolve;
use super::{Ctx, EXIT_OK};

/// Mount the store (or SNAP[:PATH]) read-only, or with --writable a tree to
/// copy files into (backup on close); runs until unmounted or signalled.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  klosetfs at /srv/backups mount /mnt/backups\n  ls /mnt/backups/snapshots /mnt/backups/latest/\n  klosetfs at /srv/backups mount latest:/home/me /mnt/home\n  rsync -aHAX /mnt/backups/latest/home/me/ /home/me/\n  umount /mnt/backups   # or Ctrl-C / SIGTERM\n\nLayout of a whole-store mount: snapshots/<time>/, ids/<short-id>/,\nhosts/<host>/<time>/, tags/<tag>/<time>/, latest -> newest snapshot."
)]
pub struct MountArgs {
    /// SNAP[:PATH] to mount at the root, then the mountpoint; or just the mountpoint.
    #[arg(num_args = 1..=2, required = true, value_name = "[SNAP[:PATH]] MOUNTPOINT")]
    args: Vec<OsString>,
    /// Let other users see the mount (needs user_allow_other for non-root).
    #[arg(long)]
    allow_other: bool,
    /// Mount over a non-empty directory.
    #[arg(long)]
    nonempty: bool,
    /// Detach and run in the background (logs go to --log-file).
    #[arg(long)]
    daemon: bool,
    /// Log file when detached (default: <cache dir>/mount.log, see --cache-dir).
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// Memory for decoded chunks, e.g. 64M or 2G (not the store's disk cache,
    /// `cache_size`, nor its folder, --cache-dir). The kernel's page cache keeps
    /// file data too, so this mostly serves read-ahead [default: 32M, 128M on
    /// S3, whose read-ahead window is longer].
    #[arg(long)]
    cache_size: Option<String>,
    /// Chunks read ahead of a sequential reader, within half of --cache-size
    /// [default: 8, 32 on S3].
    #[arg(long, value_name = "CHUNKS")]
    read_ahead: Option<usize>,
    /// Threads fetching ahead [default: one per core, 8 on S3].
    #[arg(long, value_name = "N")]
    fetch_threads: Option<usize>,
    /// Files and directories the mount keeps in memory (about 0.4 KiB each);
    /// beyond it the least recently used are handed back to the kernel, which
    /// asks again when they are used. With --tree-cache and --cache-size this
    /// bounds the mount's memory, whatever is walked.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    max_inodes: usize,
    /// Memory for decoded directories (trees), e.g. 64M.
    #[arg(long, value_name = "SIZE", default_value = "64M")]
    tree_cache: String,
    /// Seconds between looks for new snapshots (whole-store mounts).
    #[arg(long, default_value_t = 30)]
    refresh: u64,
    /// Show every file as owned by root.
    #[arg(long)]
    owner_root: bool,
    /// Show every file as owned by this uid.
    #[arg(long)]
    uid: Option<u32>,
    /// Show every file as owned by this gid.
    #[arg(long)]
    gid: Option<u32>,
    /// Threads serving FUSE requests (default: 4 per core); not files at once
    /// as in `restore --threads`.
    #[arg(long)]
    threads: Option<usize>,
    /// Writable backup-on-close mount: files copied in become a snapshot.
    #[arg(long)]
    writable: bool,
    #[command(flatten)]
    session: WritableArgs,
}

/// How a writable session (this mount's, or `serve --writable`'s) commits
/// and spools. Each needs `--writable`.
#[derive(Args)]
pub struct WritableArgs {
    /// Start the writable tree from this snapshot (id prefix or `latest`).
    #[arg(long, requires = "writable")]
    base: Option<String>,
    /// Where written files are staged (default: <cache dir>/spool/<store>/<hash of the mountpoint or address>, see
    /// --cache-dir). It holds the plaintext of files not yet committed; it is
    /// made readable by its owner only.
    #[arg(long, requires = "writable")]
    spool: Option<PathBuf>,
    /// Staged bytes before closed files are flushed out of the spool, e.g. 2G.
    #[arg(long, default_value = "1G", requires = "writable")]
    spool_size: String,
    /// Commit a snapshot every this many seconds when something changed.
    #[arg(long, requires = "writable")]
    commit_interval: Option<u64>,
    /// Tag for snapshots the writable session commits (repeatable).
    #[arg(long = "tag", requires = "writable")]
    tags: Vec<String>,
    /// Host name for snapshots the writable session commits.
    #[arg(long, requires = "writable")]
    host: Option<String>,
    /// When closed files become durable against a power cut (a crash of the
    /// server loses nothing closed in any mode): `lazy` (within 0.1 s of the
    /// close, one sync for all files closed meanwhile), `close` (fsync before
    /// every close returns: slower for many small files) or `commit` (at the
    /// next commit only).
    #[arg(long, default_value = "lazy", value_parser = ["lazy", "close", "commit"], requires = "writable")]
    sync: String,
    /// Keep entries matching this glob out of the snapshots (matched against
    /// the path from the root and the name, as `backup --exclude`;
    /// repeatable). They stay usable in the session; only commits skip them.
    #[arg(long = "exclude", value_name = "GLOB", requires = "writable")]
    excludes: Vec<String>,
    /// Read such globs from a file, one per line (# comments).
    #[arg(long = "exclude-file", value_name = "FILE", requires = "writable")]
    exclude_files: Vec<PathBuf>,
    /// Keep desktop clients' litter out of the snapshots: ._* .DS_Store
    /// .Spotlight-V100 .Trashes .TemporaryItems .fseventsd Thumbs.db
    /// ehthumbs.db desktop.ini ~$* .~lock.*#
    #[arg(long, requires = "writable")]
    exclude_litter: bool,
}

/// The spool directory of a writable mount: per store and mountpoint, so the
/// next mount at the same place finds (and recovers) what a crash left.
pub fn default_spool(ctx: &Ctx, store_id: &str, mnt: &std::path::Path) -> PathBuf {
    let key = blake3::hash(mnt.as_os_str().as_encoded_bytes()).to_hex();
    spools_of(ctx, store_id).join(&key[..16])
}

/// Where the mount that used `spool` was, if it said.
pub fn spool_mountpoint(spool: &std::path::Path) -> Option<String> {
    klosetfs::writable::session::served_at(spool).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The folder holding every default spool of one store.
pub fn spools_of(ctx: &Ctx, store_id: &str) -> PathBuf {
    ctx.klosetfs_dir()
        .join("spool")
        .join(&store_id[..16.min(store_id.len())])
}

/// `512M`, `2G`, `1048576`.
pub fn parse_size(s: &str) -> anyhow::Result<usize> {
    Ok(klosetfs::util::parse_size(s)? as usize)
}

pub fn run(ctx: &Ctx, a: MountArgs) -> anyhow::Result<u8> {
    let (target, mnt) = match a.args.as_slice() {
        [m] => (None, PathBuf::from(m)),
        [t, m] => (Some(t.clone()), PathBuf::from(m)),
        _ => bail!("give [SNAP[:PATH]] MOUNTPOINT"),
    };
    let mnt = check_mountpoint(&mnt, a.nonempty, ctx.local_path().as_deref())?;
    let remote = ctx.local_path().is_none();
    // Only a mount re-reads data, so only a mount keeps it in the disk cache.
    ctx.data_cache.set(true);
    if a.daemon && std::env::var_os(super::DAEMON_CHILD).is_none() {
        // Check the store and passphrase here, where errors are seen; the
        // daemon loads the index (loading it here too doubled start-up).
        ctx.open()?;
        return detach(ctx, &a, &mnt);
    }
    let repo = ctx.open_indexed()?;
    if a.writable {
        if target.is_some() {
            bail!("a writable mount takes --base SNAP, not SNAP[:PATH]");
        }
        return run_writable(ctx, &a, repo, &mnt);
    }
    let opts = VfsOptions {
        uid: if a.owner_root { Some(0) } else { a.uid },
        gid: if a.owner_root { Some(0) } else { a.gid },
        refresh: Duration::from_secs(a.refresh.max(1)),
        cache_bytes: cache_bytes(&a, remote)?,
        // A remote store: a long read-ahead window fetched by many threads
        // keeps a sequential reader fed through network round trips.
        readahead_chunks: a.read_ahead.unwrap_or(if remote { 32 } else { 8 }),
        fetch_threads: a.fetch_threads.unwrap_or(if remote { 8 } else { 0 }),
        max_inodes: a.max_inodes,
        // Remote stores: the files after the one read, in its directory.
        dir_ahead_files: None,
    };
    repo.set_tree_cache_bytes(klosetfs::util::parse_size(&a.tree_cache)? as usize);
    let vfs = match &target {
        None => Vfs::whole_store(repo.clone(), opts)?,
        Some(t) => {
            let t = resolve(&repo, t)?;
            if !t.node.is_dir() {
                bail!("{} is not a directory", String::from_utf8_lossy(&t.path));
            }
            Vfs::single(repo.clone(), opts, t.node, &t.snapshot)
        }
    };
    let threads = a
        .threads
        .unwrap_or_else(|| 4 * rayon::current_num_threads());
    let cfg = MountConfig {
        allow_other: a.allow_other,
        read_only: true,
        threads,
        fsname: format!("klosetfs:{}", repo.storage().location()),
        // Nothing changes in a read-only mount: the kernel's checks cost no
        // extra requests there.
        checks_in_daemon: false,
    };
    let quiet = ctx.global.quiet;
    let shown = mnt.clone();
    let vfs = Arc::new(vfs);
    let trim = vfs.clone();
    let notify = move |n| klosetfs::mount::readonly::trim_inodes(trim, n);
    serve(ReadOnlyFs::new(vfs), &mnt, &cfg, notify, move || {
        if !quiet {
            eprintln!(
                "klosetfs: mounted on {} (Ctrl-C or `umount` to stop)",
                shown.display()
            );
        }
    })?;
    Ok(EXIT_OK)
}

/// Re-runs this command in a new session with the passphrase on a pipe, and
/// returns once the mount is live (or the child failed).
fn detach(ctx: &Ctx, a: &MountArgs, mnt: &std::path::Path) -> anyhow::Result<u8> {
    use std::os::unix::process::CommandExt;
    let log = match &a.log_file {
        Some(f) => f.clone(),
        None => ctx.klosetfs_dir().join("mount.log"),
    };
    if let Some(d) = log.parent() {
        std::fs::create_dir_all(d)?;
    }
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("opening log file {}", log.display()))?;
    let pass = ctx.cached_passphrase();
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .env(super::DAEMON_CHILD, "1")
        .stdin(std::process::Stdio::piped())
        .stdout(logf.try_clone()?)
        .stderr(logf)
        .process_group(0)
        .spawn()
        .context("starting the mount daemon")?;
    if let Some(mut stdin) = child.stdin.take() {
        if let Some(p) = pass {
            stdin.write_all(&p)?;
        }
        stdin.write_all(b"\n")?;
    }
    // Polled every 10 ms: the mount is often up in well under a second.
    for _ in 0..3000 {
        if is_mounted(mnt) {
            if !ctx.global.quiet {
                outln!(
                    "mounted on {} (pid {}, log {})",
                    mnt.display(),
                    child.id(),
                    log.display()
                );
            }
            return Ok(EXIT_OK);
        }
        if let Some(status) = child.try_wait()? {
            bail!("the mount daemon exited ({status}); see {}", log.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("the mount did not come up in 30 s; see {}", log.display())
}

/// True when `mnt` appears in this process's mount table.
pub fn is_mounted(mnt: &std::path::Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = mnt.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|p| p.replace("\\040", " ") == want)
}

/// Opens a writable session as `w` says, spooled under `key`'s hash (a
/// mountpoint, a listening address) unless `--spool` names a folder: the
/// next session on the same key finds and commits what a crash left.
/// Starts its interval commits, printing each snapshot id.
pub fn start_session(
    ctx: &Ctx,
    w: &WritableArgs,
    repo: Arc<klosetfs::repo::Repo>,
    cache_bytes: usize,
    key: &std::path::Path,
    served_at: &[u8],
) -> anyhow::Result<klosetfs::writable::session::Session> {
    use klosetfs::ops::exclude::CLIENT_LITTER;
    use klosetfs::writable::session::Session;
    use klosetfs::writable::WritableOptions;
    let spool = w
        .spool
        .clone()
        .unwrap_or_else(|| default_spool(ctx, &repo.config().id, key));
    let mut excludes = super::backup::with_exclude_files(w.excludes.clone(), &w.exclude_files)?;
    if w.exclude_litter {
        excludes.extend(CLIENT_LITTER.iter().map(|g| g.to_string()));
    }
    let opts = WritableOptions {
        spool_dir: spool,
        spool_cap: parse_size(&w.spool_size)? as u64,
        host: w.host.clone().unwrap_or_else(klosetfs::util::hostname),
        tags: w.tags.clone(),
        cache_bytes,
        sync: klosetfs::writable::SyncMode::parse(&w.sync).expect("checked by clap"),
        excludes: klosetfs::writable::Excludes::new(excludes)?,
    };
    // So `recover` can say where an interrupted session was.
    let started = Session::start(repo.clone(), w.base.as_deref(), opts, served_at)?;
    let mut session = started.session;
    if let Some(id) = started.recovered {
        eprintln!(
            "klosetfs: recovered files closed before an interrupted session: snapshot {}",
            id.short()
        );
    }
    if w.base.as_deref() == Some("latest") {
        super::warn_damaged_snapshots(&repo);
    }
    if let Some(secs) = w.commit_interval {
        session.commit_every(Duration::from_secs(secs), |r| match r {
            // Nobody may be reading stdout of a long-running session.
            Ok(id) => {
                use std::io::Write as _;
                let _ = writeln!(std::io::stdout(), "snapshot {}", id.to_hex());
            }
            Err(e) => tracing::error!("{e}"),
        });
    }
    Ok(session)
}

fn run_writable(
    ctx: &Ctx,
    a: &MountArgs,
    repo: Arc<klosetfs::repo::Repo>,
    mnt: &std::path::Path,
) -> anyhow::Result<u8> {
    use klosetfs::mount::writable::WritableFuse;
    use klosetfs::writable::session::Finished;
    let session = start_session(
        ctx,
        &a.session,
        repo.clone(),
        cache_bytes(a, false)?,
        mnt,
        mnt.as_os_str().as_encoded_bytes(),
    )?;
    let cfg = MountConfig {
        allow_other: a.allow_other,
        read_only: false,
        threads: a
            .threads
            .unwrap_or_else(|| 4 * rayon::current_num_threads()),
        fsname: format!("klosetfs:{}", repo.storage().location()),
        checks_in_daemon: klosetfs::mount::writable_checks_in_daemon(a.allow_other),
    };
    let quiet = ctx.global.quiet;
    let shown = mnt.to_path_buf();
    serve(
        WritableFuse::new(session.fs().clone()),
        mnt,
        &cfg,
        |_| {},
        move || {
            if !quiet {
                eprintln!(
                    "klosetfs: writable mount on {} (unmount to commit)",
                    shown.display()
                );
            }
        },
    )?;
    // Every file is closed now: the session stores what an `mmap` changed
    // after its close and commits.
    match session.finish()? {
        Finished::Committed(id) | Finished::AlreadyCommitted(id) => {
            outln!("snapshot {}", id.to_hex())
        }
        Finished::Unchanged => eprintln!("klosetfs: nothing changed; no snapshot written"),
    }
    Ok(EXIT_OK)
}

/// glibc gives threads that allocate at once their own arenas (up to 8 per
/// core), and a long-running mount's request and fetch threads then keep
/// freed memory in many of them: two arenas cut the mount's peak RSS after a
/// cold read, `find` and `rsync` of a kernel tree from 447 to 373 MiB with
/// no slower reads (docs/benchmarks.md). A fixed mmap threshold of 4 MiB
/// stops glibc from raising it (up to 32 MiB) after large frees, which moved
/// the biggest buffers into the heap, where churn of the chunk cache
/// fragmented it (peak 249 -> 191 MiB with the 32 MiB cache, same run). Not
/// lower: at 128 KiB every ~1 MiB chunk buffer was its own mapping, and the
/// page faults and unmaps halved the cold read speed (0.64 -> 1.30 s/GiB).
/// glibc reads both
/// only at start, so the mount re-executes itself once with them set (the
/// same process id; nothing has been read or asked yet). Explicit settings win.
pub fn limit_malloc_arenas() {
    use std::os::unix::process::CommandExt;
    const TUNING: [(&str, &str); 2] = [
        ("MALLOC_ARENA_MAX", "2"),
        ("MALLOC_MMAP_THRESHOLD_", "4194304"),
    ];
    let missing: Vec<_> = TUNING
        .iter()
        .filter(|(k, _)| std::env::var_os(k).is_none())
        .collect();
    if missing.is_empty() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1));
    for (k, v) in missing {
        cmd.env(k, v);
    }
    let err = cmd.exec();
    // Only reached when the exec failed: run as we are.
    eprintln!("klosetfs: note: could not limit malloc arenas ({err})");
}

fn cache_bytes(a: &MountArgs, remote: bool) -> anyhow::Result<usize> {
    // Locally, 32 MiB reads a 1 GiB file as fast as 64 MiB did and keeps
    // the mount's peak RSS after `cat`, `find` and `rsync` of a kernel tree
    // ~60 MiB lower (docs/benchmarks.md).
    let default = if remote { "128M" } else { "32M" };
    parse_size(a.cache_size.as_deref().unwrap_or(default))
}
