//! Unmounts a mount whose daemon died without unmounting it (kill -9, a crash,
//! the OOM killer), so the mountpoint does not stay behind as "Transport
//! endpoint is not connected".
//!
//! fusermount3's `auto_unmount` does this, but fuser only lets it run on a
//! mount the kernel opens to every user (`allow_other`). A mount that was not
//! asked to be shared stays its owner's alone in the kernel, and this watcher
//! takes `auto_unmount`'s place: a small `sh` in its own process group that
//! holds the read end of a pipe. An orderly exit writes `done` first; a dead
//! daemon's pipe just closes, and the watcher unmounts the mountpoint if a
//! FUSE mount with this mount's source (`fsname`) is still there (`umount -l`
//! as root, else `fusermount3 -u -z`).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

/// A running watcher; drop it without [`DeadMan::disarm`] and it unmounts.
pub struct DeadMan {
    pipe: Option<ChildStdin>,
    child: Child,
}

/// Starts a watcher for the mount of `fsname` on `mnt` (before mounting, so
/// that it inherits no FUSE descriptor). `None` when no shell can be started:
/// the mount then works, without the clean-up after a crash.
pub fn watch(mnt: &Path, fsname: &str) -> Option<DeadMan> {
    let unmount = if nix::unistd::geteuid().is_root() {
        r#"umount -l "$1""#
    } else {
        r#"fusermount3 -u -z "$1""#
    };
    // fuser mounts as type `fuse` when root mounts directly and as
    // `fuse.klosetfs` through fusermount3; the source is the fsname either way.
    let script = format!(
        r#"IFS= read -r word; [ "$word" = done ] && exit 0
case "$(findmnt -n -o FSTYPE --mountpoint "$1" 2>/dev/null)" in fuse|fuse.*) ;; *) exit 0 ;; esac
[ "$(findmnt -n -o SOURCE --mountpoint "$1" 2>/dev/null)" = "$2" ] || exit 0
{unmount}"#
    );
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("klosetfs-unmount-watch")
        .arg(mnt)
        .arg(fsname)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Out of the terminal's process group: a Ctrl-C is the daemon's to
        // handle (it unmounts cleanly), not a reason for the watcher to quit.
        .process_group(0)
        .spawn();
    match child {
        Ok(mut child) => Some(DeadMan {
            pipe: child.stdin.take(),
            child,
        }),
        Err(e) => {
            tracing::warn!("no watcher to unmount after a crash: {e}");
            None
        }
    }
}

impl DeadMan {
    /// The daemon is leaving in order: the watcher exits and touches nothing.
    pub fn disarm(mut self) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(b"done\n");
        }
        let _ = self.child.wait();
    }
}

impl Drop for DeadMan {
    fn drop(&mut self) {
        // Closing the pipe without `done` asks the watcher to unmount. Not
        // waited for: if the mount is still there but no longer served, the
        // watcher's look at it could wait on this very process.
        drop(self.pipe.take());
    }
}
