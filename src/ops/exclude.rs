//! Globs that leave entries out: `backup --exclude`, and a writable
//! session's `--exclude`, matched the same way (against the path and the
//! name). A writable session keeps excluded names usable (a client that
//! writes one reads it back; an editor's temporary file renamed over the
//! real one is kept under its new name); only its commits, and a recovery
//! (the patterns are journaled), leave them out. Its `--exclude-litter`
//! adds the litter desktop clients leave on a network drive.

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// What `--exclude-litter` adds: the files desktop clients write beside
/// what is copied onto a network drive. macOS: AppleDouble `._*` files,
/// Finder's `.DS_Store`, Spotlight's, the trash's and fseventsd's folders;
/// Windows: thumbnail caches and `desktop.ini`; office suites' lock files
/// (`~$name`, `.~lock.name#`).
pub const CLIENT_LITTER: &[&str] = &[
    "._*",
    ".DS_Store",
    ".Spotlight-V100",
    ".Trashes",
    ".TemporaryItems",
    ".fseventsd",
    "Thumbs.db",
    "ehthumbs.db",
    "desktop.ini",
    "~$*",
    ".~lock.*#",
];

/// Globs matched against an entry's path (from the root of what is backed
/// up: `/a/b`) and against its name.
#[derive(Clone, Debug, Default)]
pub struct Excludes {
    patterns: Vec<String>,
    set: GlobSet,
}

impl Excludes {
    /// Fails on a pattern that is not a glob.
    pub fn new(patterns: Vec<String>) -> Result<Self> {
        let mut b = GlobSetBuilder::new();
        for p in &patterns {
            b.add(
                Glob::new(p).map_err(|e| Error::InvalidInput(format!("bad exclude {p:?}: {e}")))?,
            );
        }
        let set = b
            .build()
            .map_err(|e| Error::InvalidInput(format!("bad excludes: {e}")))?;
        Ok(Self { patterns, set })
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether the entry at `path` (`/`-separated) is left out, and with a
    /// directory everything under it.
    pub fn matches(&self, path: &[u8]) -> bool {
        use std::os::unix::ffi::OsStrExt;
        if self.patterns.is_empty() {
            return false;
        }
        let name = path.rsplit(|b| *b == b'/').next().unwrap_or(path);
        self.set.is_match(std::ffi::OsStr::from_bytes(path))
            || self.set.is_match(std::ffi::OsStr::from_bytes(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths_match_as_backup_excludes_do() {
        let e = Excludes::new(vec!["._*".into(), ".DS_Store".into(), "/tmp/**".into()]).unwrap();
        assert!(e.matches(b"/._photo.jpg"));
        assert!(e.matches(b"/a/b/._photo.jpg"));
        assert!(e.matches(b"/a/.DS_Store"));
        assert!(e.matches(b"/tmp/x"));
        assert!(!e.matches(b"/a/photo.jpg"));
        assert!(!e.matches(b"/a/tmp/x"));
        assert!(!e.matches(b"/a/x.DS_Store"));
        assert!(!Excludes::default().matches(b"/._x"));
        assert!(Excludes::new(vec!["a[".into()]).is_err());
    }
}
