//! The command line: `klosetfs at <store> <command>` in the Plakar style.
//! One file per subcommand; this module holds the shared options, store
//! resolution, passphrase sources and exit codes.

use std::io::IsTerminal;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _};
use clap::{Args, Parser, Subcommand};
use zeroize::Zeroizing;

use klosetfs::repo::Repo;

/// `println!` that returns the write error instead of panicking, so a reader
/// that closes the pipe (`ls | head`) ends the command quietly (see [`main`]).
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($t)*)?
    }};
}
use klosetfs::storage::Storage;
use klosetfs::userconfig::UserConfig;

mod archive;
mod backup;
mod cat;
mod check;
mod config;
mod create;
mod diff;
mod info;
mod key;
mod locate;
mod ls;
mod mount;
mod output;
mod progress;
mod prune;
mod recover;
mod restore;
mod rm;
#[cfg(feature = "ui")]
mod serve;
mod spec;
mod sync;
#[cfg(feature = "ui")]
mod ui;
mod versions;

/// Exit codes, documented in the README.
pub const EXIT_OK: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
/// The work finished but some entries failed (unreadable sources, damaged data).
pub const EXIT_PARTIAL: u8 = 3;

const AFTER_HELP: &str = "Examples:
  klosetfs at /srv/backups create
  klosetfs at /srv/backups backup ~/Documents
  klosetfs at /srv/backups ls
  klosetfs at /srv/backups restore -to /tmp/out latest:/home/me/Documents
  klosetfs config store create home location=/srv/backups passphrase_file=~/.kpass
  klosetfs at @home ls

The store can also be given with --store or KLOSETFS_STORE; the passphrase with
KLOSETFS_PASSPHRASE, --passphrase-file, --passphrase-command, or at a prompt.
Logs: RUST_LOG=klosetfs=debug, or -v / -vv.";

#[derive(Parser)]
#[command(name = "klosetfs", version, about = "Encrypted, deduplicating backups you can mount", after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub cmd: Top,
}

#[derive(Args, Clone, Debug)]
pub struct Global {
    /// The store: a folder path, an `s3://bucket/prefix` URI, or @name of a
    /// store configured with `klosetfs config store create`.
    #[arg(long, env = "KLOSETFS_STORE", global = true, value_name = "STORE")]
    pub store: Option<String>,
    /// Read the passphrase from the first line of this file.
    #[arg(long, global = true, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Run this shell command and use the first line it prints as passphrase.
    #[arg(long, global = true, value_name = "CMD")]
    pub passphrase_command: Option<String>,
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// No progress bars and no summaries.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// klosetfs's folder for remote stores' caches, writable mounts' spools and
    /// detached mounts' logs (default ~/.cache/klosetfs).
    #[arg(long, env = "KLOSETFS_CACHE_DIR", global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// No on-disk cache for remote stores.
    #[arg(long, global = true)]
    pub no_cache: bool,
}

#[derive(Subcommand)]
pub enum Top {
    /// Run COMMAND on STORE: create, backup, ls, cat, diff, locate, versions, info,
    /// restore, archive, sync, check, rm (by id or retention policy), prune,
    /// key, unlock, mount (read-only or --writable), recover, ui (web browser).
    At {
        /// A folder path, an `s3://bucket/prefix` URI, or @name of a
        /// configured store.
        store: String,
        #[command(subcommand)]
        cmd: StoreCmd,
    },
    #[command(flatten)]
    Store(StoreCmd),
    /// Print shell completions, e.g. `klosetfs completions bash > /etc/bash_completion.d/klosetfs`.
    #[command(
        after_help = "Examples:\n  klosetfs completions bash > /etc/bash_completion.d/klosetfs\n  klosetfs completions zsh > ~/.zfunc/_klosetfs"
    )]
    Completions {
        /// The shell to write completions for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `klosetfs man > /usr/local/share/man/man1/klosetfs.1`.
    #[command(
        after_help = "Example:\n  klosetfs man > /usr/local/share/man/man1/klosetfs.1 && man klosetfs"
    )]
    Man,
    /// Commit a snapshot of a writable mount now; prints its id.
    #[command(after_help = "Example:\n  klosetfs commit /mnt/in")]
    Commit {
        /// Where the writable mount is (`klosetfs at STORE mount --writable MNT`).
        mountpoint: PathBuf,
    },
    /// Manage named stores in the user's config file.
    #[command(
        after_help = "Examples:\n  klosetfs config store create home location=/srv/backups passphrase_file=~/.kpass\n  klosetfs config store show\n  klosetfs at @home ls"
    )]
    Config {
        #[command(subcommand)]
        cmd: config::ConfigCmd,
    },
}

#[derive(Subcommand)]
pub enum StoreCmd {
    Create(create::CreateArgs),
    Backup(backup::BackupArgs),
    Ls(ls::LsArgs),
    Cat(cat::CatArgs),
    Diff(diff::DiffArgs),
    Locate(locate::LocateArgs),
    Versions(versions::VersionsArgs),
    #[cfg(feature = "ui")]
    Ui(ui::UiArgs),
    #[cfg(feature = "ui")]
    Serve(serve::ServeArgs),
    Info(info::InfoArgs),
    Restore(restore::RestoreArgs),
    Archive(archive::ArchiveArgs),
    Sync(sync::SyncArgs),
    Check(check::CheckArgs),
    Rm(rm::RmArgs),
    Prune(prune::PruneArgs),
    Key(key::KeyArgs),
    Unlock(rm::UnlockArgs),
    Mount(mount::MountArgs),
    Recover(recover::RecoverArgs),
}

/// Set in a detached mount's child: the passphrase arrives on stdin.
pub const DAEMON_CHILD: &str = "KLOSETFS_DAEMON_CHILD";

/// What every store command gets: the global options and the store spec.
pub struct Ctx {
    pub global: Global,
    pub store: Option<String>,
    /// The passphrase once asked for, so one command never asks twice.
    pass: std::sync::OnceLock<Zeroizing<Vec<u8>>>,
    /// Keep file data in a remote store's disk cache (mounts re-read data;
    /// backup, restore and check read it once).
    pub data_cache: std::cell::Cell<bool>,
    /// Where an environment passphrase comes from: `KLOSETFS_PASSPHRASE`,
    /// or `KLOSETFS_OTHER_PASSPHRASE` for the second store of `sync`.
    pass_env: &'static str,
}

impl Ctx {
    pub fn new(global: Global, store: Option<String>) -> Self {
        Ctx {
            global,
            store,
            pass: Default::default(),
            data_cache: Default::default(),
            pass_env: "KLOSETFS_PASSPHRASE",
        }
    }

    /// The second store of a two-store command (`sync`): its own passphrase
    /// options and environment variable, the same cache options.
    pub fn other(&self, store: &str, pass_file: Option<PathBuf>, pass_cmd: Option<String>) -> Self {
        let mut global = self.global.clone();
        global.passphrase_file = pass_file;
        global.passphrase_command = pass_cmd;
        Ctx {
            pass_env: "KLOSETFS_OTHER_PASSPHRASE",
            ..Ctx::new(global, Some(store.to_string()))
        }
    }

    fn settings(&self) -> anyhow::Result<(String, std::collections::BTreeMap<String, String>)> {
        let spec = self.store.clone().ok_or_else(|| {
            anyhow!("no store given: use `klosetfs at STORE ...`, --store or KLOSETFS_STORE")
        })?;
        if let Some(name) = spec.strip_prefix('@') {
            let cfg = UserConfig::load()?;
            let s = cfg.store(name)?.clone();
            let loc = s
                .get("location")
                .cloned()
                .ok_or_else(|| anyhow!("store @{name} has no location"))?;
            Ok((loc, s))
        } else {
            Ok((spec, Default::default()))
        }
    }

    /// The store's resource stack. `create` makes the folder or bucket if needed.
    pub fn storage(&self, create: bool) -> anyhow::Result<Arc<dyn Storage>> {
        let (loc, settings) = self.settings()?;
        let opts = klosetfs::resource::OpenOptions {
            create,
            settings,
            cache_dir: self.global.cache_dir.clone(),
            no_cache: self.global.no_cache,
            data_cache: self.data_cache.get(),
            retry: None,
        };
        Ok(klosetfs::resource::open(&loc, &opts)?)
    }

    /// klosetfs's own folder for caches, spools and logs: `--cache-dir` /
    /// `KLOSETFS_CACHE_DIR`, else the store's `cache_dir` setting, else
    /// `~/.cache/klosetfs`.
    pub fn klosetfs_dir(&self) -> PathBuf {
        let setting = self
            .settings()
            .ok()
            .and_then(|(_, s)| s.get("cache_dir").map(|d| expand_tilde(d)));
        self.global
            .cache_dir
            .clone()
            .or(setting)
            .unwrap_or_else(|| {
                dirs::cache_dir()
                    .unwrap_or_else(std::env::temp_dir)
                    .join("klosetfs")
            })
    }

    /// The local directory of the store, when it is one.
    pub fn local_path(&self) -> Option<PathBuf> {
        let (loc, _) = self.settings().ok()?;
        (!loc.contains("://")).then(|| expand_tilde(&loc))
    }

    /// The passphrase (wiped from memory when the last copy is dropped).
    pub fn passphrase(&self) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        if let Some(p) = self.pass.get() {
            return Ok(p.clone());
        }
        let p = Zeroizing::new(self.find_passphrase()?);
        Ok(self.pass.get_or_init(|| p).clone())
    }

    /// The passphrase if one was needed so far.
    pub fn cached_passphrase(&self) -> Option<Zeroizing<Vec<u8>>> {
        self.pass.get().cloned()
    }

    fn find_passphrase(&self) -> anyhow::Result<Vec<u8>> {
        if std::env::var_os(DAEMON_CHILD).is_some() {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            return Ok(line.trim_end_matches('\n').as_bytes().to_vec());
        }
        let (_, settings) = self.settings()?;
        if let Some(f) = &self.global.passphrase_file {
            return read_first_line(f);
        }
        if let Some(c) = &self.global.passphrase_command {
            return run_passphrase_command(c);
        }
        if let Some(p) = std::env::var_os(self.pass_env) {
            use std::os::unix::ffi::OsStrExt;
            return Ok(p.as_bytes().to_vec());
        }
        if let Some(f) = settings.get("passphrase_file") {
            return read_first_line(&expand_tilde(f));
        }
        if let Some(c) = settings.get("passphrase_command") {
            return run_passphrase_command(c);
        }
        if let Some(p) = settings.get("passphrase") {
            return Ok(p.as_bytes().to_vec());
        }
        if self.pass_env != "KLOSETFS_PASSPHRASE" {
            // The second store of `sync` with nothing of its own: the same
            // passphrase as the first, when that one is in the environment.
            if let Some(p) = std::env::var_os("KLOSETFS_PASSPHRASE") {
                use std::os::unix::ffi::OsStrExt;
                return Ok(p.as_bytes().to_vec());
            }
        }
        if std::io::stdin().is_terminal() {
            let prompt = match &self.store {
                Some(s) if self.pass_env != "KLOSETFS_PASSPHRASE" => format!("passphrase of {s}: "),
                _ => "passphrase: ".into(),
            };
            let p = rpassword::prompt_password(prompt).context("reading the passphrase")?;
            return Ok(p.into_bytes());
        }
        if self.pass_env != "KLOSETFS_PASSPHRASE" {
            bail!(
                "the store {} is encrypted and no passphrase was given for it ({}, --other-passphrase-file, --other-passphrase-command, or its @name settings)",
                self.store.as_deref().unwrap_or(""),
                self.pass_env
            )
        }
        bail!("the store is encrypted and no passphrase was given (KLOSETFS_PASSPHRASE, --passphrase-file, --passphrase-command)")
    }

    /// Opens the store (asking for the passphrase only if needed).
    pub fn open(&self) -> anyhow::Result<Arc<Repo>> {
        let storage = self.storage(false)?;
        let ask = || {
            self.passphrase()
                .map(|p| p.to_vec())
                .map_err(|e| klosetfs::Error::InvalidInput(format!("{e:#}")))
        };
        Ok(Arc::new(Repo::open(storage, &ask)?))
    }

    /// Opens the store and loads its index.
    pub fn open_indexed(&self) -> anyhow::Result<Arc<Repo>> {
        let repo = self.open()?;
        repo.load_index()?;
        Ok(repo)
    }

    pub fn show_progress(&self) -> bool {
        !self.global.quiet && std::io::stderr().is_terminal()
    }
}

pub use klosetfs::util::expand_tilde;

/// Says on stderr which snapshot objects the last listing skipped as damaged:
/// then `latest` and the lists mean the newest *readable* snapshot.
pub fn warn_damaged_snapshots(repo: &Repo) {
    for (id, e) in repo.damaged_snapshots() {
        eprintln!(
            "klosetfs: warning: snapshot {} is damaged and skipped ({e}); `latest` means the newest readable snapshot (run `check`)",
            id.short()
        );
    }
}

fn read_first_line(p: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let s = std::fs::read(p).with_context(|| format!("reading passphrase file {}", p.display()))?;
    let line = s.split(|b| *b == b'\n').next().unwrap_or_default();
    Ok(line.strip_suffix(b"\r").unwrap_or(line).to_vec())
}

fn run_passphrase_command(c: &str) -> anyhow::Result<Vec<u8>> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(c)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running the passphrase command")?;
    if !out.status.success() {
        bail!("the passphrase command failed ({})", out.status);
    }
    let line = out.stdout.split(|b| *b == b'\n').next().unwrap_or_default();
    Ok(line.to_vec())
}

fn init_logging(verbose: u8) {
    // Other crates (the AWS SDK above all) speak up only on errors, unless
    // RUST_LOG asks for more.
    let default = match verbose {
        0 => "error,klosetfs=warn",
        1 => "error,klosetfs=info",
        _ => "warn,klosetfs=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Accepts Plakar's single-dash `-to` as `--to`.
fn normalize_args() -> Vec<std::ffi::OsString> {
    std::env::args_os()
        .map(|a| if a == "-to" { "--to".into() } else { a })
        .collect()
}

/// clap writes the usage of a subcommand's subcommand from its parent's
/// name alone ("klosetfs at key add"): those under `at` get the whole line,
/// with `<STORE>`.
fn with_store_in_nested_usage(cmd: clap::Command) -> clap::Command {
    cmd.mut_subcommand("at", |at| {
        at.mut_subcommands(|group| {
            let parent = format!("klosetfs at <STORE> {}", group.get_name());
            group.mut_subcommands(|leaf| {
                let name = format!("{parent} {}", leaf.get_name());
                let usage = leaf.clone().bin_name(&name).render_usage().to_string();
                let usage = usage.trim_start_matches("Usage:").trim();
                // The global options are added later: every command has some.
                let usage = match usage.strip_prefix(&name) {
                    Some(rest) if !rest.contains("[OPTIONS]") => format!("{name} [OPTIONS]{rest}"),
                    _ => usage.to_string(),
                };
                leaf.override_usage(usage)
            })
        })
    })
}

/// Parses the command line; clap's messages name `-to` as the user typed it
/// (it is parsed as `--to`).
fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let typed_to = std::env::args_os().any(|a| a == "-to");
    let mut cmd = with_store_in_nested_usage(Cli::command());
    let parsed = cmd
        .try_get_matches_from_mut(normalize_args())
        .and_then(|m| Cli::from_arg_matches(&m))
        .map_err(|e| e.format(&mut cmd));
    parsed.unwrap_or_else(|e| {
        if !typed_to {
            e.exit()
        }
        let text = e.render().to_string().replace("--to", "-to");
        if e.use_stderr() {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
        std::process::exit(e.exit_code())
    })
}

pub fn main() -> ExitCode {
    let cli = parse();
    // Long-running servers of many threads: the mounts, and the writable
    // WebDAV drive (its peak RSS over a kernel-tree upload was 579 MiB with
    // glibc's default arenas).
    let cmd = match &cli.cmd {
        Top::At { cmd, .. } | Top::Store(cmd) => Some(cmd),
        _ => None,
    };
    let long_running = match cmd {
        Some(StoreCmd::Mount(_)) => true,
        #[cfg(feature = "ui")]
        Some(StoreCmd::Serve(_)) => true,
        _ => false,
    };
    if long_running {
        mount::limit_malloc_arenas();
    }
    init_logging(cli.global.verbose);
    let result = match cli.cmd {
        Top::At { store, cmd } => run(Ctx::new(cli.global, Some(store)), cmd),
        Top::Store(cmd) => {
            let store = cli.global.store.clone();
            run(Ctx::new(cli.global, store), cmd)
        }
        Top::Config { cmd } => config::run(cmd),
        Top::Commit { mountpoint } => commit(&mountpoint),
        Top::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "klosetfs",
                &mut std::io::stdout(),
            );
            Ok(EXIT_OK)
        }
        Top::Man => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map(|_| EXIT_OK)
                .map_err(Into::into)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) if is_broken_pipe(&e) => ExitCode::from(EXIT_OK),
        Err(e) => {
            eprintln!("klosetfs: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The reader of our output went away: as Unix tools do, stop without a word.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(ctx: Ctx, cmd: StoreCmd) -> anyhow::Result<u8> {
    match cmd {
        StoreCmd::Create(a) => create::run(&ctx, a),
        StoreCmd::Backup(a) => backup::run(&ctx, a),
        StoreCmd::Ls(a) => ls::run(&ctx, a),
        StoreCmd::Cat(a) => cat::run(&ctx, a),
        StoreCmd::Diff(a) => diff::run(&ctx, a),
        StoreCmd::Locate(a) => locate::run(&ctx, a),
        StoreCmd::Versions(a) => versions::run(&ctx, a),
        #[cfg(feature = "ui")]
        StoreCmd::Ui(a) => ui::run(&ctx, a),
        #[cfg(feature = "ui")]
        StoreCmd::Serve(a) => serve::run(&ctx, a),
        StoreCmd::Info(a) => info::run(&ctx, a),
        StoreCmd::Restore(a) => restore::run(&ctx, a),
        StoreCmd::Archive(a) => archive::run(&ctx, a),
        StoreCmd::Sync(a) => sync::run(&ctx, a),
        StoreCmd::Check(a) => check::run(&ctx, a),
        StoreCmd::Rm(a) => rm::run(&ctx, a),
        StoreCmd::Prune(a) => prune::run(&ctx, a),
        StoreCmd::Key(a) => key::run(&ctx, a),
        StoreCmd::Unlock(a) => rm::unlock(&ctx, a),
        StoreCmd::Mount(a) => mount::run(&ctx, a),
        StoreCmd::Recover(a) => recover::run(&ctx, a),
    }
}

/// Asks a writable mount to commit by reading its hidden control file.
fn commit(mnt: &std::path::Path) -> anyhow::Result<u8> {
    let f = mnt.join(std::ffi::OsStr::from_bytes(klosetfs::writable::COMMIT_FILE));
    let out = std::fs::read_to_string(&f).with_context(|| {
        format!(
            "{} is not a writable klosetfs mount (or the commit failed)",
            mnt.display()
        )
    })?;
    outln!("snapshot {}", out.trim());
    Ok(EXIT_OK)
}
