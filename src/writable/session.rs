//! A writable session's life, for any front end: open the spool (committing
//! what a dead session left there), note where it is served, commit on an
//! interval, and at the end store what changed after its close and make the
//! last snapshot. The FUSE mount is one shell over it; a second front end
//! (a writable WebDAV) drives the same [`WritableFs`] through the same
//! lifecycle instead of copying it.

use std::path::Path;
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::format::id::SnapshotId;
use crate::fs_error::FsError;
use crate::repo::Repo;

use super::{WritableFs, WritableOptions};

/// The file in a spool that names where its session was served (a
/// mountpoint, a listening address), so `recover` can say which one died.
pub const SERVED_AT_FILE: &str = "mountpoint";

/// What [`Session::start`] found and made.
pub struct Started {
    pub session: Session,
    /// The snapshot committed from a journal a dead session left.
    pub recovered: Option<SnapshotId>,
}

/// A running writable session. See the module documentation.
pub struct Session {
    fs: Arc<WritableFs>,
    /// Stops the interval commits (dropping it ends their thread).
    stop: Option<Sender<()>>,
    interval: Option<JoinHandle<()>>,
}

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Finished {
    /// The last commit made this snapshot.
    Committed(SnapshotId),
    /// Nothing changed since this session's last commit (an interval or a
    /// request), which holds everything.
    AlreadyCommitted(SnapshotId),
    /// Nothing was ever changed: no snapshot.
    Unchanged,
}

impl Session {
    /// Opens the spool of `opts` (see [`WritableFs::new`]) and notes
    /// `served_at` in it (best effort: only `recover`'s message needs it).
    pub fn start(
        repo: Arc<Repo>,
        base: Option<&str>,
        opts: WritableOptions,
        served_at: &[u8],
    ) -> Result<Started> {
        let spool = opts.spool_dir.clone();
        let (fs, recovered) = WritableFs::new(repo, base, opts)?;
        if let Err(e) = note_served_at(&spool, served_at) {
            tracing::warn!("could not note where the session is served in its spool: {e}");
        }
        Ok(Started {
            session: Session {
                fs: Arc::new(fs),
                stop: None,
                interval: None,
            },
            recovered,
        })
    }

    /// The writable tree the front end drives.
    pub fn fs(&self) -> &Arc<WritableFs> {
        &self.fs
    }

    /// Commits every `every` while something changed, calling `done` with
    /// each outcome (a failed commit keeps everything in the spool and the
    /// next one tries again). Stops at [`Session::finish`].
    pub fn commit_every(
        &mut self,
        every: Duration,
        done: impl Fn(Result<SnapshotId>) + Send + 'static,
    ) {
        let (tx, rx) = channel::<()>();
        let fs = self.fs.clone();
        let every = every.max(Duration::from_secs(1));
        let spawned = std::thread::Builder::new()
            .name("klosetfs-commit".into())
            .spawn(move || loop {
                match rx.recv_timeout(every) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                if fs.has_changes() {
                    done(fs.commit().map_err(|e| failed("an interval commit", e)));
                }
            });
        match spawned {
            Ok(h) => {
                self.stop = Some(tx);
                self.interval = Some(h);
            }
            Err(e) => tracing::error!("interval commits not started: {e}"),
        }
    }

    /// Ends the session once no file is open any more (the FUSE mount:
    /// after the kernel let go of it): stops the interval commits, stores
    /// what was changed after its close (through an `mmap`), and commits
    /// what changed since the last commit. On failure everything stays in
    /// the spool, where the next session or `recover` commits it.
    pub fn finish(mut self) -> Result<Finished> {
        drop(self.stop.take());
        if let Some(h) = self.interval.take() {
            let _ = h.join();
        }
        self.fs
            .store_unclosed()
            .map_err(|e| failed("storing files at the end", e))?;
        if self.fs.has_changes() {
            let id = self
                .fs
                .commit()
                .map_err(|e| failed("committing at the end", e))?;
            return Ok(Finished::Committed(id));
        }
        Ok(match self.fs.last_commit() {
            Some(id) => Finished::AlreadyCommitted(id),
            None => Finished::Unchanged,
        })
    }
}

/// A store or commit failure of the session, saying that nothing is lost.
fn failed(what: &str, e: FsError) -> Error {
    Error::io(
        format!("{what} (files stay in the spool; run `klosetfs at STORE recover`)"),
        std::io::Error::other(e.to_string()),
    )
}

/// Where a spool's session was served, as [`Session::start`] noted it.
pub fn served_at(spool: &Path) -> Option<Vec<u8>> {
    std::fs::read(spool.join(SERVED_AT_FILE)).ok()
}

fn note_served_at(spool: &Path, at: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(spool.join(SERVED_AT_FILE))
        .and_then(|mut f| f.write_all(at))
}
