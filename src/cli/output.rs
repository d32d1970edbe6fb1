//! Files the user names for a command's output (`archive -o`): written so
//! that a failure never costs what was at that path before. A regular file
//! (or a path where nothing is yet) is written to a temporary file beside it
//! and renamed into place only when complete; on failure the temporary file
//! goes and the old file stays. Anything else — a device, a fifo, a symlink
//! (`/dev/stdout`, `/proc/self/fd/1`) — is written straight through and is
//! never removed, whatever happens.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// An output path opened for writing; see the module doc.
pub struct OutputFile {
    file: File,
    /// The temporary file and the path it becomes on [`OutputFile::finish`];
    /// `None` when writing straight through.
    replace: Option<(PathBuf, PathBuf)>,
}

impl OutputFile {
    /// Opens `path` for output. Files made here are readable by their owner
    /// only (`mode`), as what goes in them is snapshot data in clear.
    pub fn create(path: &Path, mode: u32) -> anyhow::Result<OutputFile> {
        let through = |create: bool, truncate: bool| -> anyhow::Result<OutputFile> {
            let file = OpenOptions::new()
                .write(true)
                .create(create)
                .truncate(truncate)
                .mode(mode)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            Ok(OutputFile {
                file,
                replace: None,
            })
        };
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("looking at {}", path.display())),
            Ok(m) if m.is_dir() => bail!("{} is a directory", path.display()),
            // A file with other names too: a rename would split them, so it
            // is rewritten in place (and left as it is cut on failure).
            Ok(m) if m.is_file() && m.nlink() > 1 => return through(false, true),
            Ok(m) if m.is_file() => {}
            Ok(m) if m.file_type().is_symlink() => {
                // Written through the link; truncated only when it leads to
                // a regular file.
                let regular = std::fs::metadata(path).map(|t| t.is_file());
                return through(true, regular.unwrap_or(true));
            }
            // A device, fifo or socket: written to as it is.
            Ok(_) => return through(false, false),
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .with_context(|| format!("{} names no file", path.display()))?;
        let mut r = [0u8; 6];
        getrandom::getrandom(&mut r).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".klosetfs-{}.tmp", hex::encode(r)));
        let tmp = dir.join(tmp_name);
        let file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
        {
            Ok(f) => f,
            // A file we may write in a folder we may not: written in place
            // (and, as for every file not made here, never removed).
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied && path.is_file() => {
                return through(false, true)
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("creating a temporary file beside {}", path.display())
                })
            }
        };
        Ok(OutputFile {
            file,
            replace: Some((tmp, path.to_path_buf())),
        })
    }

    /// Makes the output final: a temporary file is synced and renamed over
    /// the target.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.file.flush()?;
        if let Some((tmp, target)) = self.replace.take() {
            let done = self
                .file
                .sync_all()
                .and_then(|_| std::fs::rename(&tmp, &target));
            if let Err(e) = done {
                let _ = std::fs::remove_file(&tmp);
                return Err(e).with_context(|| format!("writing {}", target.display()));
            }
        }
        Ok(())
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for OutputFile {
    /// Not finished: only the temporary file this command made goes.
    fn drop(&mut self) {
        if let Some((tmp, _)) = self.replace.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// Whether an error is the reader of our output going away.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    let pipe = |e: &io::Error| e.kind() == io::ErrorKind::BrokenPipe;
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>().is_some_and(pipe)
            || matches!(c.downcast_ref::<klosetfs::Error>(), Some(klosetfs::Error::Io { err, .. }) if pipe(err))
    })
}

/// The message for output cut short by its reader, as `tar` says it.
pub fn cut_short(what: &str) -> anyhow::Error {
    anyhow::anyhow!("{what} cut short: its reader closed the pipe before the end")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_output_leaves_the_old_file_and_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.tar");
        std::fs::write(&p, b"old").unwrap();
        {
            let mut o = OutputFile::create(&p, 0o600).unwrap();
            o.write_all(b"half").unwrap();
            // dropped without finish: a failure
        }
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        let mut o = OutputFile::create(&p, 0o600).unwrap();
        o.write_all(b"new").unwrap();
        o.finish().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        // A new path that fails leaves nothing.
        let q = d.path().join("new.tar");
        drop(OutputFile::create(&q, 0o600).unwrap());
        assert!(!q.exists());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
