//! Mounting: checks on the mountpoint, the options every klosetfs mount uses,
//! and a session loop that unmounts cleanly on SIGINT/SIGTERM/SIGHUP.

pub mod deadman;
pub mod kernel;
pub mod readonly;
pub mod writable;

use std::path::{Path, PathBuf};

use fuser::{Config, Filesystem, MountOption, Session, SessionACL};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::error::{Error, Result};

#[derive(Clone, Debug, Default)]
pub struct MountConfig {
    pub allow_other: bool,
    pub read_only: bool,
    /// Worker threads handling FUSE requests.
    pub threads: usize,
    /// Shown by `mount` and `df` as the source.
    pub fsname: String,
    /// Leave permission checks to the daemon instead of the kernel
    /// (`default_permissions` off). Only for a writable mount that root alone
    /// can reach, where it saves a request per created file: see
    /// [`writable_checks_in_daemon`].
    pub checks_in_daemon: bool,
}

/// Whether a writable mount leaves permission checks to the daemon: when it
/// is root's and not shared. Every create makes the kernel forget its
/// directory's attributes, and `default_permissions` asks for them again
/// before the next one — one GETATTR per copied file. The kernel lets only
/// processes with root's uids and gids into such a mount, and root passes
/// every mode check there but running a file without an execute bit, which
/// the kernel still checks itself (and `access` the daemon). What is given
/// up: a process running as root *without* `CAP_DAC_OVERRIDE` is not held to
/// the modes in this mount.
pub fn writable_checks_in_daemon(allow_other: bool) -> bool {
    !allow_other && nix::unistd::geteuid().is_root()
}

/// Refuses a mountpoint that is missing, not a directory, not empty (unless
/// `nonempty`), or inside the store's own directory.
pub fn check_mountpoint(mnt: &Path, nonempty: bool, store_dir: Option<&Path>) -> Result<PathBuf> {
    let meta = std::fs::metadata(mnt)
        .map_err(|e| Error::io(format!("mountpoint {}", mnt.display()), e))?;
    if !meta.is_dir() {
        return Err(Error::InvalidInput(format!(
            "mountpoint {} is not a directory",
            mnt.display()
        )));
    }
    let canon = std::fs::canonicalize(mnt)
        .map_err(|e| Error::io(format!("mountpoint {}", mnt.display()), e))?;
    if !nonempty {
        let mut rd = std::fs::read_dir(&canon)
            .map_err(|e| Error::io(format!("mountpoint {}", mnt.display()), e))?;
        if rd.next().is_some() {
            return Err(Error::InvalidInput(format!(
                "mountpoint {} is not empty (use --nonempty to mount over it anyway)",
                mnt.display()
            )));
        }
    }
    if let Some(store) = store_dir.and_then(|s| std::fs::canonicalize(s).ok()) {
        if canon.starts_with(&store) {
            return Err(Error::InvalidInput(format!(
                "mountpoint {} lies inside the store {}",
                mnt.display(),
                store.display()
            )));
        }
    }
    Ok(canon)
}

fn have_fusermount() -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("fusermount3").is_file()))
        .unwrap_or(false)
}

/// Mount options: named `klosetfs`, kernel permission checks (unless
/// `checks_in_daemon`), no setuid or device files from backups. Unless `allow_other` is asked for, the kernel
/// keeps the mount to its owner (root's mount is root's alone); only a shared
/// mount gets fusermount3's `auto_unmount`, which fuser allows only with
/// `allow_other` — the others have [`deadman`]'s watcher instead.
pub fn fuser_config(c: &MountConfig) -> Config {
    let mut opts = vec![
        MountOption::FSName(c.fsname.clone()),
        MountOption::Subtype("klosetfs".into()),
        MountOption::NoSuid,
        MountOption::NoDev,
        MountOption::NoAtime,
    ];
    if !c.checks_in_daemon {
        opts.push(MountOption::DefaultPermissions);
    }
    if c.read_only {
        opts.push(MountOption::RO);
    }
    // Not `SessionACL::RootAndOwner`: fuser implements it as the kernel's
    // `allow_other` plus a uid filter in the daemon, which lets READ through
    // and never sees what the kernel serves from its caches, so other users
    // could read any world-readable file root had looked up.
    let acl = if c.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    if c.allow_other && have_fusermount() {
        opts.push(MountOption::AutoUnmount);
    }
    let mut cfg = Config::default();
    cfg.mount_options = opts;
    cfg.acl = acl;
    cfg.n_threads = Some(c.threads.max(1));
    cfg.clone_fd = true;
    cfg
}

/// Mounts `fs` and serves it until unmounted or signalled; `notifier` gets
/// the session's channel for messages to the kernel, and `ready` runs once the
/// mount is live. Returns after the kernel has let go of the mountpoint.
pub fn serve<FS: Filesystem>(
    fs: FS,
    mnt: &Path,
    c: &MountConfig,
    notifier: impl FnOnce(fuser::Notifier),
    ready: impl FnOnce(),
) -> Result<()> {
    raise_fd_limit();
    let config = fuser_config(c);
    let deadman = if config.mount_options.contains(&MountOption::AutoUnmount) {
        None
    } else {
        deadman::watch(mnt, &c.fsname)
    };
    let session = match Session::new(fs, mnt, &config) {
        Ok(s) => s,
        Err(e) => {
            if let Some(d) = deadman {
                d.disarm();
            }
            return Err(Error::io(format!("mounting on {}", mnt.display()), e));
        }
    };
    notifier(session.notifier());
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| Error::io("installing signal handlers", e))?;
    let handle = signals.handle();
    let mnt_owned = mnt.to_path_buf();
    let watcher = std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            tracing::info!("signal {sig}: unmounting {}", mnt_owned.display());
            if let Err(e) = unmount(&mnt_owned) {
                tracing::error!("could not unmount {}: {e}", mnt_owned.display());
            }
        }
    });
    ready();
    let r = session.run();
    handle.close();
    let _ = watcher.join();
    // A session that ended in order has been unmounted; one that failed may
    // still be mounted, and the watcher's unmount is wanted then.
    if let (Ok(()), Some(d)) = (&r, deadman) {
        d.disarm();
    }
    r.map_err(|e| Error::io(format!("serving {}", mnt.display()), e))
}

/// Unmounts `mnt`: directly as root (lazily if busy), else via `fusermount3 -u`.
/// The session loop then ends on its own.
pub fn unmount(mnt: &Path) -> Result<()> {
    use nix::mount::{umount2, MntFlags};
    match umount2(mnt, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => umount2(mnt, MntFlags::MNT_DETACH)
            .map_err(|e| Error::io("lazy unmount", std::io::Error::from(e))),
        Err(_) => {
            let st = std::process::Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(mnt)
                .status()
                .map_err(|e| Error::io("running fusermount3", e))?;
            if st.success() {
                Ok(())
            } else {
                Err(Error::InvalidInput(format!("fusermount3 -u failed ({st})")))
            }
        }
    }
}

/// A filesystem daemon serves many open files at once: use the hard limit.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}
