//! The writable mount's journal: an append-only log of every change to the
//! namespace, fsynced when a file is fsynced, when it is closed under
//! `--sync close`, and otherwise by a background sync at most [`LAZY_SYNC`]
//! later (with the spool files of large files closed meanwhile). With the spool
//! files it names, it lets the next mount (or `recover`) rebuild exactly what
//! every successful `close()` saw, after a crash of the daemon or the machine.
//!
//! Format: the magic `KLJ2`, then records, each
//! `u32_le(len) ‖ blake3(body)[..4] ‖ body`, body = `postcard(Record)`; the first
//! record is the header. Under `--sync close` the file is zero-filled ahead of
//! the last record, so reading stops at a zero length (otherwise at its end);
//! a torn record fails its check and ends the journal there too.
//!
//! Why zero-filled: under `--sync close`, closing a file costs one `fdatasync` of the journal. When
//! that append grows the file, ext4 must commit its own journal for the new
//! size, and that commit also writes out the data of every other file with
//! newly allocated blocks (the packs being written), about 450 µs per close
//! here. Overwriting blocks that are already allocated and written needs no
//! metadata commit: the sync is the data write and a device flush. A thread
//! keeps the zeroed space ahead of the appender, syncing each extension once.
//!
//! Syncs are group commits taken outside the journal's lock: appenders go on
//! while one `fdatasync` runs, and a close whose record an earlier sync
//! already covered returns at once.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};

pub use super::record::{NewMeta, Record};

const MAGIC: &[u8; 4] = b"KLJ2";
/// Zeroed space is extended in steps that double from 1 MiB up to 64 MiB.
const FIRST_STEP: u64 = 1 << 20;
const MAX_STEP: u64 = 64 << 20;
/// How long a change that is not a close (rename, chmod, utimens, unlink…)
/// may wait for the disk once [`SyncState::arm`] was called: less than ext4's
/// own 5 s commit interval, and rare enough to cost nothing.
pub const LAZY_SYNC: Duration = Duration::from_millis(100);

fn check(body: &[u8]) -> [u8; 4] {
    blake3::hash(body).as_bytes()[..4]
        .try_into()
        .expect("4 bytes")
}

/// The zero-filler's state: how far the file is zeroed (and synced), how far
/// the appender wants it.
#[derive(Default)]
struct Room {
    zeroed: u64,
    want: u64,
    error: Option<String>,
    closing: bool,
}

#[derive(Default)]
struct Zeroing {
    room: Mutex<Room>,
    cv: Condvar,
}

#[derive(Default)]
struct Synced {
    upto: u64,
    /// A failed `fdatasync`, kept: Linux reports a writeback error once per
    /// file, so a later sync could succeed although these bytes were lost.
    error: Option<String>,
}

/// What has been appended and what is on disk, shared with syncers that run
/// outside the journal's lock and with the lazy syncer thread.
pub struct SyncState {
    file: Arc<File>,
    /// Bytes written (the end of the last complete record).
    appended: AtomicU64,
    /// Bytes known durable; held while syncing, so syncs queue and coalesce.
    synced: Mutex<Synced>,
    /// Spool files of closed large files, synced before the journal that
    /// names them.
    files: Mutex<Vec<Arc<File>>>,
    /// A lazy sync is pending.
    armed: AtomicBool,
    closing: Mutex<bool>,
    cv: Condvar,
}

impl SyncState {
    /// Makes the journal durable up to `end` (at least): one `fdatasync`
    /// covers every record appended before it starts, so concurrent closes
    /// share syncs.
    pub fn sync_to(&self, end: u64) -> Result<()> {
        let mut synced = self.synced.lock();
        if let Some(e) = &synced.error {
            return Err(Error::io(
                "syncing the journal (an earlier sync failed)",
                std::io::Error::other(e.clone()),
            ));
        }
        // The end first, the files after: a spool is registered before the
        // record naming it is appended, so every record below `target` has
        // its spool in `files` (or synced by an earlier sync).
        let target = self.appended.load(Ordering::Acquire);
        let files = std::mem::take(&mut *self.files.lock());
        if synced.upto >= end && files.is_empty() {
            return Ok(());
        }
        for f in files {
            if let Err(e) = f.sync_data() {
                synced.error = Some(format!("a spool file: {e}"));
                return Err(Error::io("syncing a spool file", e));
            }
        }
        if let Err(e) = self.file.sync_data() {
            synced.error = Some(e.to_string());
            return Err(Error::io("syncing the journal", e));
        }
        synced.upto = target;
        Ok(())
    }

    /// Everything appended so far, durable.
    pub fn sync_all(&self) -> Result<()> {
        self.sync_to(self.appended.load(Ordering::Acquire))
    }

    /// Has the next sync (lazy or not) make `spool` durable too, before the
    /// journal records that name it.
    pub fn also_sync(&self, spool: Arc<File>) {
        self.files.lock().push(spool);
        self.arm();
    }

    /// Asks the lazy syncer to make what is appended durable within
    /// [`LAZY_SYNC`].
    pub fn arm(&self) {
        if !self.armed.swap(true, Ordering::AcqRel) {
            let _g = self.closing.lock();
            self.cv.notify_all();
        }
    }
}

/// The lazy syncer: once armed, waits [`LAZY_SYNC`] (closes usually sync
/// everything meanwhile) and syncs what is still not durable. A failure is
/// logged here and kept: every later close and fsync reports it, until a
/// commit starts a new journal.
fn lazy_sync(s: &SyncState) {
    let mut closing = s.closing.lock();
    loop {
        if *closing {
            return;
        }
        if !s.armed.load(Ordering::Acquire) {
            s.cv.wait(&mut closing);
            continue;
        }
        s.cv.wait_for(&mut closing, LAZY_SYNC);
        if *closing {
            return;
        }
        s.armed.store(false, Ordering::Release);
        drop(closing);
        if let Err(e) = s.sync_all() {
            tracing::warn!("background journal sync: {e}");
        }
        closing = s.closing.lock();
    }
}

/// The largest record buffer [`Journal::append`] keeps for the next one:
/// room for a record holding the largest inline file, its path and metadata.
const KEEP_BUF: usize = 2 * super::spool::INLINE_LIMIT as usize;

/// Appends go through `sync.file`; where the next record goes is
/// `sync.appended` (one writer: the journal's owner, under its lock).
pub struct Journal {
    path: PathBuf,
    zeroing: Arc<Zeroing>,
    filler: Option<JoinHandle<()>>,
    sync: Arc<SyncState>,
    lazy: Option<JoinHandle<()>>,
    /// The last record's buffer, reused: one allocation the size of a small
    /// file per close sent glibc sorting its bins on the FUSE threads.
    buf: Vec<u8>,
}

impl Journal {
    /// Starts a new journal (replacing any old one) with its `head` records
    /// (the header, then the excludes if any) and the records `carried` over from the journal it replaces (framed, as
    /// [`Journal::bytes_since`] gives them), durable before it is in place.
    /// `zero_fill` keeps zeroed, synced space ahead of the appender: worth it
    /// when every close syncs (`--sync close`); otherwise it only writes
    /// every byte twice.
    pub fn create(path: &Path, head: &[Record], carried: &[u8], zero_fill: bool) -> Result<Self> {
        let tmp = path.with_extension("new");
        // The journal holds the content of small files: its owner's eyes only.
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(format!("creating journal {}", tmp.display()), e))?;
        let file = Arc::new(file);
        let zeroing = Arc::new(Zeroing::default());
        let filler = if zero_fill {
            let (f, z) = (file.clone(), zeroing.clone());
            Some(
                std::thread::Builder::new()
                    .name("journal-zero".into())
                    .spawn(move || fill_zeros(&f, &z))
                    .map_err(|e| Error::io("starting the journal's zero-filler", e))?,
            )
        } else {
            None
        };
        let sync = Arc::new(SyncState {
            file,
            appended: AtomicU64::new(0),
            synced: Mutex::new(Synced::default()),
            files: Mutex::new(Vec::new()),
            armed: AtomicBool::new(false),
            closing: Mutex::new(false),
            cv: Condvar::new(),
        });
        let mut j = Journal {
            path: tmp.clone(),
            zeroing,
            filler,
            sync: sync.clone(),
            lazy: None,
            buf: Vec::new(),
        };
        // Started once `j` exists, so a failure here still stops the filler.
        j.lazy = Some(
            std::thread::Builder::new()
                .name("journal-sync".into())
                .spawn(move || lazy_sync(&sync))
                .map_err(|e| Error::io("starting the journal's syncer", e))?,
        );
        j.write(MAGIC)?;
        for r in head {
            j.append(r)?;
        }
        if !carried.is_empty() {
            j.write(carried)?;
        }
        j.sync()?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io("installing journal", e))?;
        if let Some(d) = path.parent() {
            File::open(d)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io("syncing spool dir", e))?;
        }
        j.path = path.to_path_buf();
        Ok(j)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the last appended record ends: `sync_to` this makes it durable.
    pub fn end(&self) -> u64 {
        self.sync.appended.load(Ordering::Acquire)
    }

    /// The framed records appended since `mark` (an earlier [`Journal::end`]),
    /// to carry into the journal that replaces this one.
    pub fn bytes_since(&self, mark: u64) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; self.end().saturating_sub(mark) as usize];
        self.sync
            .file
            .read_exact_at(&mut buf, mark)
            .map_err(|e| Error::io("reading the journal", e))?;
        Ok(buf)
    }

    /// The sync side, to sync without holding the journal.
    pub fn syncer(&self) -> Arc<SyncState> {
        self.sync.clone()
    }

    pub fn append(&mut self, r: &Record) -> Result<()> {
        // Encoded straight after room for its length and check: a small
        // file's bytes are copied once here, not once per step.
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.reserve(8 + r.encoded_len_hint());
        buf.extend_from_slice(&[0; 8]);
        let mut buf =
            postcard::to_extend(r, buf).map_err(|e| Error::corrupt("journal record", e))?;
        let len = (buf.len() - 8) as u32;
        let sum = check(&buf[8..]);
        buf[..4].copy_from_slice(&len.to_le_bytes());
        buf[4..8].copy_from_slice(&sum);
        let done = self.write(&buf);
        // A rare larger record's buffer is let go, not kept for the mount's life.
        if buf.capacity() <= KEEP_BUF {
            self.buf = buf;
        }
        done
    }

    /// Writes at the end, into zeroed space (waiting for the filler if needed).
    fn write(&mut self, buf: &[u8]) -> Result<()> {
        let at = self.end();
        let need = at + buf.len() as u64;
        if self.filler.is_some() {
            let z = &*self.zeroing;
            let mut room = z.room.lock();
            let step = room.zeroed.clamp(FIRST_STEP, MAX_STEP);
            // Ask for the next step once half of the current one is used.
            if room.want < need + step / 2 {
                room.want = room.want.max(need) + step;
                z.cv.notify_all();
            }
            while room.zeroed < need {
                if let Some(e) = &room.error {
                    return Err(Error::io(
                        "extending the journal",
                        std::io::Error::other(e.clone()),
                    ));
                }
                z.cv.wait(&mut room);
            }
        }
        self.sync
            .file
            .write_all_at(buf, at)
            .map_err(|e| Error::io("writing the journal", e))?;
        self.sync.appended.store(need, Ordering::Release);
        Ok(())
    }

    /// Makes every appended record durable.
    pub fn sync(&mut self) -> Result<()> {
        self.sync.sync_all()
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.zeroing.room.lock().closing = true;
        self.zeroing.cv.notify_all();
        if let Some(t) = self.filler.take() {
            let _ = t.join();
        }
        *self.sync.closing.lock() = true;
        self.sync.cv.notify_all();
        if let Some(t) = self.lazy.take() {
            let _ = t.join();
        }
    }
}

/// The zero-filler: extends the zeroed space to what is wanted, syncing the
/// new size once per extension; a failure (full disk) reaches the appender.
fn fill_zeros(file: &File, z: &Zeroing) {
    let zeros = vec![0u8; 1 << 20];
    let mut room = z.room.lock();
    loop {
        if room.closing || room.error.is_some() {
            return;
        }
        if room.zeroed >= room.want {
            z.cv.wait(&mut room);
            continue;
        }
        let (from, to) = (room.zeroed, room.want);
        drop(room);
        let mut at = from;
        let mut r = Ok(());
        while at < to && r.is_ok() {
            let n = (to - at).min(zeros.len() as u64) as usize;
            r = file.write_all_at(&zeros[..n], at);
            at += n as u64;
        }
        let r = r.and_then(|()| file.sync_all());
        room = z.room.lock();
        match r {
            Ok(()) => room.zeroed = to,
            Err(e) => room.error = Some(e.to_string()),
        }
        z.cv.notify_all();
    }
}

/// Reads every complete record; stops quietly at a torn tail.
pub fn read(path: &Path) -> Result<Vec<Record>> {
    let f = File::open(path)
        .map_err(|e| Error::io(format!("reading journal {}", path.display()), e))?;
    let mut r = BufReader::new(f);
    let mut magic = [0u8; 4];
    match r.read_exact(&mut magic) {
        Ok(()) if &magic == MAGIC => Ok(read_records(r, path)),
        Ok(()) => Err(Error::InvalidInput(format!(
            "journal {} is not in this version's format (an older klosetfs wrote it?): \
             recover it with the version that wrote it",
            path.display()
        ))),
        // Empty or shorter than the magic: a crash right at creation, before
        // any record could be written.
        Err(_) => Ok(Vec::new()),
    }
}

/// The records of a journal's bytes (magic included), up to the first torn
/// or damaged one.
pub fn read_from(mut r: impl Read, path: &Path) -> Vec<Record> {
    let mut magic = [0u8; 4];
    match r.read_exact(&mut magic) {
        Ok(()) if &magic == MAGIC => read_records(r, path),
        _ => Vec::new(),
    }
}

fn read_records(mut r: impl Read, path: &Path) -> Vec<Record> {
    let mut out = Vec::new();
    loop {
        let mut head = [0u8; 8];
        if r.read_exact(&mut head).is_err() {
            break;
        }
        let n = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        if n == 0 {
            // The zero-filled space after the last record.
            break;
        }
        if n > 64 << 20 {
            tracing::warn!(
                "journal {}: implausible record length; stopping",
                path.display()
            );
            break;
        }
        let mut body = vec![0u8; n];
        if r.read_exact(&mut body).is_err() || check(&body) != head[4..] {
            tracing::warn!("journal {}: torn last record ignored", path.display());
            break;
        }
        match postcard::from_bytes(&body) {
            Ok(rec) => out.push(rec),
            Err(e) => {
                tracing::warn!("journal {}: bad record ({e}); stopping", path.display());
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Record {
        Record::Header {
            store_id: "s".into(),
            base: None,
            host: "h".into(),
            tags: vec![],
        }
    }

    #[test]
    fn round_trip_and_torn_tail() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("journal");
        let h = header();
        let mut j = Journal::create(&p, std::slice::from_ref(&h), &[], true).unwrap();
        let u = Record::Unlink {
            path: b"x".to_vec(),
        };
        j.append(&u).unwrap();
        j.sync().unwrap();
        let end = j.end();
        drop(j);
        // The file is zero-filled past the last record.
        assert!(std::fs::metadata(&p).unwrap().len() >= FIRST_STEP);
        assert_eq!(read(&p).unwrap(), vec![h.clone(), u.clone()]);
        // A torn record at the end (its length written, its body not all
        // there) fails its check and is ignored.
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(&[50, 0, 0, 0, 1, 2, 3, 4, 9, 9], end)
            .unwrap();
        assert_eq!(read(&p).unwrap(), vec![h, u]);
        // A journal of another format is refused, not read as empty.
        std::fs::write(&p, [20, 0, 0, 0, 1, 2]).unwrap();
        assert!(read(&p).is_err());
    }

    /// A small file's bytes round-trip through a journal inside its record.
    #[test]
    fn inline_bytes_round_trip() {
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("journal");
        let h = header();
        let c = Record::Content {
            path: b"f".to_vec(),
            size: bytes.len() as u64,
            mtime: 1,
            chunks: Vec::new(),
            spool: None,
            inline: Some(Arc::new(bytes)),
        };
        let mut j = Journal::create(&p, std::slice::from_ref(&h), &[], false).unwrap();
        j.append(&c).unwrap();
        j.sync().unwrap();
        drop(j);
        assert_eq!(read(&p).unwrap(), vec![h, c]);
    }

    #[test]
    fn armed_records_become_durable_soon_and_syncs_coalesce() {
        let d = tempfile::tempdir().unwrap();
        let h = header();
        let mut j = Journal::create(
            &d.path().join("journal"),
            std::slice::from_ref(&h),
            &[],
            true,
        )
        .unwrap();
        let s = j.syncer();
        let synced_at_create = s.synced.lock().upto;
        assert_eq!(synced_at_create, j.end());
        j.append(&Record::Unlink {
            path: b"a".to_vec(),
        })
        .unwrap();
        assert!(
            s.synced.lock().upto < j.end(),
            "appending alone does not sync"
        );
        s.arm();
        let deadline = std::time::Instant::now() + LAZY_SYNC * 50;
        while s.synced.lock().upto < j.end() {
            assert!(
                std::time::Instant::now() < deadline,
                "the lazy syncer never synced"
            );
            std::thread::sleep(LAZY_SYNC / 4);
        }
        // A sync up to a point already covered is a no-op; a later record
        // needs a new one.
        let end = j.end();
        s.sync_to(end).unwrap();
        j.append(&Record::Unlink {
            path: b"b".to_vec(),
        })
        .unwrap();
        assert_eq!(s.synced.lock().upto, end);
        s.sync_to(j.end()).unwrap();
        assert_eq!(s.synced.lock().upto, j.end());
        // After a failed sync every later one fails, even if the disk
        // would now say yes.
        s.synced.lock().error = Some("EIO".into());
        assert!(s.sync_to(0).is_err() && s.sync_all().is_err());
    }
}
