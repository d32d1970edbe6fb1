//! `archive`: a snapshot directory (or file) as a POSIX pax tar stream, so
//! people can hand a backup to someone without klosetfs. Streamed: one tree
//! per directory level and a few chunks per file are in memory at a time,
//! whatever the size of the tree or the files. Pax records carry what ustar
//! cannot: long and non-UTF-8 names, nanosecond times, large ids, owner
//! names, xattrs (`SCHILY.xattr.*`), and sparse files (GNU sparse 1.0, from
//! all-zero chunks, which are known by id without reading them).

use std::collections::HashMap;
use std::io::{Read, Write};

use tar::{EntryType, Header};

use crate::error::{Error, Result};
use crate::format::id::BlobId;
use crate::format::tree::{Node, NodeKind};
use crate::repo::Repo;
use crate::view::content::{ContentReader, Piece};

/// What went into an archive, and what tar could not carry.
#[derive(Debug, Default)]
pub struct ArchiveReport {
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    pub hardlinks: u64,
    /// File bytes (the logical size of sparse files).
    pub bytes: u64,
    /// Entries left out (sockets; in zip also devices and fifos), by path.
    pub dropped: Vec<String>,
    /// Names that are not UTF-8, stored as their lossy UTF-8 form (zip).
    pub renamed: Vec<String>,
}

/// What a zip archive cannot keep, said once per archive.
pub const ZIP_LOSSES: &str = "zip keeps names, contents, rwx permissions, mtimes (to 2 s, as UTC) \
and symlinks; it drops owners, xattrs, setuid/setgid/sticky bits, atimes and ctimes, \
nanoseconds, sparse holes, devices and fifos, and stores hard links as copies";

/// Writes `root` as a zip to `out`, streamed (data descriptors, zip64 for
/// big files), deflated; see [`ZIP_LOSSES`] for what zip cannot hold.
pub fn write_zip<W: Write>(repo: &Repo, root: &Node, out: W) -> Result<(W, ArchiveReport)> {
    use zip::write::SimpleFileOptions;
    let mut z = zip::ZipWriter::new_stream(out);
    let mut report = ArchiveReport::default();
    let zerr =
        |e: zip::result::ZipError| Error::io("writing the archive", std::io::Error::other(e));
    walk(repo, root, b"", &mut |path, n| {
        if path.is_empty() {
            return Ok(()); // the root directory itself: zip has no entry for it
        }
        let name = match std::str::from_utf8(path) {
            Ok(s) => s.to_string(),
            Err(_) => {
                let s = String::from_utf8_lossy(path).into_owned();
                report.renamed.push(s.clone());
                s
            }
        };
        let opts = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(n.mode & 0o7777)
            .last_modified_time(zip_time(n.mtime))
            .large_file(n.size > u32::MAX as u64 / 2);
        match n.kind {
            NodeKind::Dir => {
                report.dirs += 1;
                z.add_directory(name, opts).map_err(zerr)
            }
            NodeKind::Symlink => {
                report.others += 1;
                let target = String::from_utf8_lossy(&n.target).into_owned();
                z.add_symlink(name, target, opts).map_err(zerr)
            }
            NodeKind::File => {
                report.files += 1;
                report.bytes += n.size;
                z.start_file(name, opts).map_err(zerr)?;
                let pieces = n.content.iter().map(|c| Piece::Chunk(*c)).collect();
                std::io::copy(&mut ContentReader::new(repo, pieces), &mut z).map_err(io)?;
                Ok(())
            }
            _ => {
                report.dropped.push(name);
                Ok(())
            }
        }
    })?;
    let out = z.finish().map_err(zerr)?.into_inner();
    Ok((out, report))
}

/// A zip (MS-DOS) time: UTC, to 2 seconds, clamped to 1980–2107.
fn zip_time(ns: i64) -> zip::DateTime {
    let t = jiff::Timestamp::from_nanosecond(ns as i128)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(jiff::tz::TimeZone::UTC);
    let year = t.year().clamp(1980, 2107) as u16;
    zip::DateTime::from_date_and_time(
        year,
        t.month() as u8,
        t.day() as u8,
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
    )
    .unwrap_or_default()
}

/// Writes `root` (a directory's contents under `./`, or one file by its
/// name) as a pax tar to `out`; returns `out` after the end-of-archive mark.
pub fn write_tar<W: Write>(repo: &Repo, root: &Node, out: W) -> Result<(W, ArchiveReport)> {
    let mut w = TarWriter {
        repo,
        b: tar::Builder::new(out),
        links: HashMap::new(),
        zero_ids: HashMap::new(),
        report: ArchiveReport::default(),
    };
    walk(repo, root, b".", &mut |path, n| w.entry(path, n))?;
    let report = w.report;
    let out =
        w.b.into_inner()
            .map_err(|e| Error::io("writing the archive", e))?;
    Ok((out, report))
}

/// Calls `f` with every entry under `root`, parents before children: the
/// root itself as `top` when it is a directory (its entries are `top/NAME`),
/// or the one file by its name.
fn walk(
    repo: &Repo,
    root: &Node,
    top: &[u8],
    f: &mut dyn FnMut(&[u8], &Node) -> Result<()>,
) -> Result<()> {
    if !root.is_dir() {
        return f(&root.name, root);
    }
    f(top, root)?;
    walk_dir(repo, top, root, f)
}

fn walk_dir(
    repo: &Repo,
    path: &[u8],
    node: &Node,
    f: &mut dyn FnMut(&[u8], &Node) -> Result<()>,
) -> Result<()> {
    let Some(sub) = node.subtree else {
        return Ok(());
    };
    let tree = repo.load_tree(&sub)?;
    for child in &tree.nodes {
        let mut p = path.to_vec();
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(&child.name);
        f(&p, child)?;
        if child.is_dir() {
            walk_dir(repo, &p, child, f)?;
        }
    }
    Ok(())
}

struct TarWriter<'a, W: Write> {
    repo: &'a Repo,
    b: tar::Builder<W>,
    /// Hard-linked files already written: (dev, ino) → path.
    links: HashMap<(u64, u64), Vec<u8>>,
    /// The id of an all-zero chunk of each size met.
    zero_ids: HashMap<u32, BlobId>,
    report: ArchiveReport,
}

fn io(e: std::io::Error) -> Error {
    Error::io("writing the archive", e)
}

/// A pax time: seconds with nine decimals, negative before 1970.
fn pax_time(ns: i64) -> String {
    let sign = if ns < 0 { "-" } else { "" };
    let a = ns.unsigned_abs();
    format!("{sign}{}.{:09}", a / 1_000_000_000, a % 1_000_000_000)
}

impl<'a, W: Write> TarWriter<'a, W> {
    fn entry(&mut self, path: &[u8], n: &Node) -> Result<()> {
        let mut h = Header::new_ustar();
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        let entry_type = match n.kind {
            NodeKind::File => EntryType::Regular,
            NodeKind::Dir => EntryType::Directory,
            NodeKind::Symlink => EntryType::Symlink,
            NodeKind::Fifo => EntryType::Fifo,
            NodeKind::CharDevice => EntryType::Char,
            NodeKind::BlockDevice => EntryType::Block,
            NodeKind::Socket => {
                self.report
                    .dropped
                    .push(String::from_utf8_lossy(path).into());
                return Ok(());
            }
        };
        h.set_entry_type(entry_type);
        h.set_mode(n.mode & 0o7777);
        set_id(&mut h, &mut pax, "uid", n.uid);
        set_id(&mut h, &mut pax, "gid", n.gid);
        set_owner_name(&mut h, &mut pax, "uname", &n.user);
        set_owner_name(&mut h, &mut pax, "gname", &n.group);
        h.set_mtime(n.mtime.max(0).div_euclid(1_000_000_000) as u64);
        pax.push(("mtime".into(), pax_time(n.mtime).into_bytes()));
        pax.push(("atime".into(), pax_time(n.atime).into_bytes()));
        pax.push(("ctime".into(), pax_time(n.ctime).into_bytes()));
        for x in &n.xattrs {
            let name = String::from_utf8_lossy(&x.name);
            pax.push((format!("SCHILY.xattr.{name}"), x.value.clone()));
        }
        let mut body: Box<dyn Read + 'a> = Box::new(std::io::empty());
        let mut size = 0;
        let mut name = path.to_vec();
        match n.kind {
            NodeKind::Dir => {
                name.push(b'/');
                self.report.dirs += 1;
            }
            NodeKind::Symlink => {
                set_link(&mut h, &mut pax, &n.target);
                self.report.others += 1;
            }
            NodeKind::CharDevice | NodeKind::BlockDevice => {
                let dev = n.rdev as libc::dev_t;
                h.set_device_major(libc::major(dev)).map_err(io)?;
                h.set_device_minor(libc::minor(dev)).map_err(io)?;
                self.report.others += 1;
            }
            NodeKind::Fifo => self.report.others += 1,
            NodeKind::File => {
                let key = (n.dev, n.ino);
                let linked = n.is_hardlinked();
                if let Some(target) = linked.then(|| self.links.get(&key)).flatten() {
                    h.set_entry_type(EntryType::Link);
                    let target = target.clone();
                    set_link(&mut h, &mut pax, &target);
                    self.report.hardlinks += 1;
                } else {
                    if linked {
                        self.links.insert(key, path.to_vec());
                    }
                    self.report.files += 1;
                    self.report.bytes += n.size;
                    let (s, r) = self.content(n, path, &mut name, &mut pax)?;
                    size = s;
                    body = r;
                }
            }
            NodeKind::Socket => unreachable!("left out above"),
        }
        set_path(&mut h, &mut pax, &name);
        h.set_size(size);
        if !pax.is_empty() {
            self.b
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(io)?;
        }
        h.set_cksum();
        self.b.append(&h, body).map_err(io)
    }

    /// A file's body and its size in the archive: the chunks in order, or,
    /// when some chunks are all zeros, a GNU sparse 1.0 map followed by the
    /// data regions only.
    fn content(
        &mut self,
        n: &Node,
        path: &[u8],
        name: &mut Vec<u8>,
        pax: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<(u64, Box<dyn Read + 'a>)> {
        let holes: Vec<bool> = n
            .content
            .iter()
            .map(|c| self.zero_id(c.size) == c.id)
            .collect();
        if !holes.iter().any(|h| *h) {
            let r = ContentReader::new(
                self.repo,
                n.content.iter().map(|c| Piece::Chunk(*c)).collect(),
            );
            return Ok((n.size, Box::new(r)));
        }
        // Holes: runs of zero chunks, shrunk to 512-byte boundaries (GNU
        // tar reads each data region in whole blocks, so every region but
        // one ending the file must be a multiple of 512 bytes long).
        let mut holes_at: Vec<(u64, u64)> = Vec::new();
        let mut off = 0u64;
        for (c, hole) in n.content.iter().zip(&holes) {
            let end = off + c.size as u64;
            if *hole {
                match holes_at.last_mut() {
                    Some((_, e)) if *e == off => *e = end,
                    _ => holes_at.push((off, end)),
                }
            }
            off = end;
        }
        let holes_at: Vec<(u64, u64)> = holes_at
            .into_iter()
            .map(|(a, b)| {
                let b = if b == n.size { b } else { b / 512 * 512 };
                (a.div_ceil(512) * 512, b)
            })
            .filter(|(a, b)| a < b)
            .collect();
        let mut regions: Vec<(u64, u64)> = Vec::new();
        let mut at = 0;
        for (a, b) in &holes_at {
            if *a > at {
                regions.push((at, a - at));
            }
            at = *b;
        }
        if at < n.size {
            regions.push((at, n.size - at));
        }
        // The bytes of the regions: data chunks whole, zeros where a region
        // takes in the edge of a hole.
        let mut data = Vec::new();
        let mut off = 0u64;
        let mut r = regions.iter().peekable();
        for (c, hole) in n.content.iter().zip(&holes) {
            let end = off + c.size as u64;
            while r.peek().is_some_and(|(o, l)| o + l <= off) {
                r.next();
            }
            if let Some((o, l)) = r.peek() {
                let (a, b) = (off.max(*o), end.min(o + l));
                if a < b {
                    data.push(if *hole {
                        Piece::Zeros(b - a)
                    } else {
                        Piece::Chunk(*c)
                    });
                }
                if end > o + l {
                    // A hole chunk running past this region into the next.
                    r.next();
                    if let Some((o, l)) = r.peek() {
                        let (a, b) = (off.max(*o), end.min(o + l));
                        if a < b {
                            data.push(Piece::Zeros(b - a));
                        }
                    }
                }
            }
            off = end;
        }
        // The map ends with an empty region at the file's end, as GNU tar
        // writes it.
        regions.push((n.size, 0));
        let mut map = format!("{}\n", regions.len());
        for (o, l) in &regions {
            map.push_str(&format!("{o}\n{l}\n"));
        }
        let mut map = map.into_bytes();
        map.resize(map.len().div_ceil(512) * 512, 0);
        let data_len: u64 = regions.iter().map(|r| r.1).sum();
        pax.push(("GNU.sparse.major".into(), b"1".to_vec()));
        pax.push(("GNU.sparse.minor".into(), b"0".to_vec()));
        pax.push(("GNU.sparse.name".into(), path.to_vec()));
        pax.push((
            "GNU.sparse.realsize".into(),
            n.size.to_string().into_bytes(),
        ));
        // The header's own name is a placeholder readers without sparse
        // support extract the packed form to.
        let base = path.rsplit(|c| *c == b'/').next().unwrap_or(path);
        let dir = &path[..path.len() - base.len()];
        *name = [dir, b"GNUSparseFile.0/", base].concat();
        let size = map.len() as u64 + data_len;
        let r = std::io::Cursor::new(map).chain(ContentReader::new(self.repo, data));
        Ok((size, Box::new(r)))
    }

    fn zero_id(&mut self, size: u32) -> BlobId {
        let keys = self.repo.keys();
        *self
            .zero_ids
            .entry(size)
            .or_insert_with(|| keys.blob_id(&vec![0u8; size as usize]))
    }
}

/// Numeric ids beyond ustar's 7 octal digits go in a pax record.
fn set_id(h: &mut Header, pax: &mut Vec<(String, Vec<u8>)>, key: &str, v: u32) {
    let fits = v < 0o7777777;
    let stored = if fits { v as u64 } else { 0 };
    if key == "uid" {
        h.set_uid(stored);
    } else {
        h.set_gid(stored);
    }
    if !fits {
        pax.push((key.into(), v.to_string().into_bytes()));
    }
}

fn set_owner_name(h: &mut Header, pax: &mut Vec<(String, Vec<u8>)>, key: &str, v: &str) {
    if v.len() < 32 {
        let r = if key == "uname" {
            h.set_username(v)
        } else {
            h.set_groupname(v)
        };
        if r.is_ok() {
            return;
        }
    }
    pax.push((key.into(), v.as_bytes().to_vec()));
}

/// Names that do not fit ustar's 100 bytes, or are not plain ASCII, go in a
/// pax `path` record; the header keeps a truncated copy.
fn set_path(h: &mut Header, pax: &mut Vec<(String, Vec<u8>)>, name: &[u8]) {
    let plain = name.len() < 100 && name.iter().all(|c| c.is_ascii_graphic() || *c == b' ');
    if !plain {
        pax.push(("path".into(), name.to_vec()));
    }
    let field = &mut h.as_old_mut().name;
    let n = name.len().min(99);
    field[..n].copy_from_slice(&name[..n]);
}

fn set_link(h: &mut Header, pax: &mut Vec<(String, Vec<u8>)>, target: &[u8]) {
    let plain = target.len() < 100 && target.iter().all(|c| c.is_ascii_graphic() || *c == b' ');
    if !plain {
        pax.push(("linkpath".into(), target.to_vec()));
    }
    let field = &mut h.as_old_mut().linkname;
    let n = target.len().min(99);
    field[..n].copy_from_slice(&target[..n]);
}
