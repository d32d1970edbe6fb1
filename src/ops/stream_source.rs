//! `backup --stdin` and `backup --stdin-from-command`: one stream (standard
//! input, or what a command such as `pg_dump` prints) stored as one file at the
//! snapshot's root. Chunked and deduplicated like any file, so a second dump of
//! the same database stores little. A command that fails leaves no snapshot.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::blob::BlobType;
use crate::format::snapshot::Summary;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::ops::backup::{BackupResult, Progress};
use crate::ops::writer::{ParentChoice, SnapshotPlan, SnapshotWriter};
use crate::repo::Repo;

/// Where the stream comes from.
pub enum Stream {
    Stdin,
    /// A program and its arguments; its standard output is the stream.
    Command(Vec<String>),
}

pub struct StreamOptions {
    /// The file's name in the snapshot (no `/`).
    pub name: String,
    pub tags: Vec<String>,
    pub host: Option<String>,
    /// The snapshot's time (ns since the epoch) instead of now.
    pub time: Option<i64>,
}

/// The last bytes of a failed command's standard error, for the message.
const STDERR_TAIL: usize = 2048;

pub fn backup_stream(
    repo: &Arc<Repo>,
    stream: Stream,
    opts: &StreamOptions,
    progress: &Progress,
) -> Result<BackupResult> {
    let name = opts.name.as_bytes();
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(Error::InvalidInput(format!(
            "{:?} cannot be a file name (no `/`, not empty, `.` or `..`)",
            opts.name
        )));
    }
    let label = match &stream {
        Stream::Stdin => "stdin".to_string(),
        Stream::Command(argv) => argv.first().cloned().unwrap_or_default(),
    };
    let plan = SnapshotPlan {
        host: opts.host.clone().unwrap_or_else(crate::util::hostname),
        paths: vec![format!("{label}:/{}", opts.name).into_bytes()],
        tags: opts.tags.clone(),
        time: opts.time,
        root: None,
    };
    // Chunks of the last dump still dedup through the index; no parent is
    // needed to recognise unchanged content.
    let writer = SnapshotWriter::start(repo, plan, ParentChoice::None)?;
    let started = crate::util::now_ns();
    let content = match stream {
        Stream::Stdin => store(&writer, std::io::stdin().lock(), progress)?,
        Stream::Command(argv) => run_command(&writer, &argv, progress)?,
    };
    let size: u64 = content.iter().map(|c| c.size as u64).sum();
    let node = Node {
        mode: 0o600,
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        user: crate::util::username(),
        size,
        atime: started,
        mtime: started,
        ctime: started,
        content,
        ..Node::bare(name.to_vec(), NodeKind::File)
    };
    let tree = writer
        .packer()
        .save(BlobType::Tree, &Tree::new(vec![node]).encode())?;
    progress.files.fetch_add(1, Ordering::Relaxed);
    let summary = Summary {
        files: 1,
        bytes: size,
        ..Default::default()
    };
    let (id, snapshot) = writer.finish(tree, summary)?;
    Ok(BackupResult {
        id,
        snapshot,
        errors: Vec::new(),
    })
}

fn store(
    writer: &SnapshotWriter,
    r: impl Read,
    progress: &Progress,
) -> Result<Vec<crate::format::tree::ChunkRef>> {
    let packer = writer.packer();
    packer
        .chunk_stream(r, 0, |id, chunk| {
            progress
                .bytes
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            packer.store(BlobType::Data, id, &chunk)
        })
        .map_err(|e| e.into_error("reading the stream"))
}

fn run_command(
    writer: &SnapshotWriter,
    argv: &[String],
    progress: &Progress,
) -> Result<Vec<crate::format::tree::ChunkRef>> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| Error::InvalidInput("--stdin-from-command needs a command".into()))?;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("running {prog}"), e))?;
    let stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    // Drain stderr on its own thread so a chatty command cannot block on it.
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let stored = store(writer, stdout, progress);
    let status = child
        .wait()
        .map_err(|e| Error::io(format!("waiting for {prog}"), e))?;
    let err = err_reader.join().unwrap_or_default();
    if !status.success() {
        let tail = &err[err.len().saturating_sub(STDERR_TAIL)..];
        return Err(Error::InvalidInput(format!(
            "{prog} failed ({status}); no snapshot was written. Its last output on stderr:\n{}",
            String::from_utf8_lossy(tail).trim_end()
        )));
    }
    stored
}
