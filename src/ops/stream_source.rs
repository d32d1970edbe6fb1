//! `backup --stdin` and `backup --stdin-from-command`: one stream (standard
//! input, or what a command such as `pg_dump` prints) stored as one file at the
//! snapshot's root. Chunked and deduplicated like any file, so a second dump of
//! the same database stores little. A command that fails leaves no snapshot.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::format::id::BlobId;
use crate::format::snapshot::Summary;
use crate::format::tree::{Node, NodeKind};
use crate::ops::source::{
    cores, walk, BackupResult, Content, Entry, Problems, Progress, Source, Threads,
};
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
    let now = crate::util::now_ns();
    let node = Node {
        mode: 0o600,
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        user: crate::util::username(),
        atime: now,
        mtime: now,
        ctime: now,
        ..Node::bare(name.to_vec(), NodeKind::File)
    };
    let (tree, summary) = match stream {
        Stream::Stdin => read(&writer, node, Box::new(std::io::stdin()), progress)?,
        Stream::Command(argv) => run_command(&writer, node, &argv, progress)?,
    };
    let (id, snapshot) = writer.finish(tree, summary)?;
    Ok(BackupResult {
        id,
        snapshot,
        errors: Vec::new(),
    })
}

/// A snapshot root holding one file whose content is a stream.
struct StreamSource {
    node: Node,
    stream: Mutex<Option<Box<dyn Read + Send>>>,
}

struct Piped(Box<dyn Read + Send>);

impl Read for Piped {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Content for Piped {}

impl Source for StreamSource {
    type Handle = ();

    fn list(&self, _: &(), _: &Problems) -> Result<Vec<Entry<()>>> {
        Ok(vec![Entry {
            node: self.node.clone(),
            handle: (),
        }])
    }

    fn open(&self, _: &()) -> std::io::Result<Box<dyn Content + '_>> {
        let s = self.stream.lock().take();
        s.map(|s| Box::new(Piped(s)) as Box<dyn Content>)
            .ok_or_else(|| std::io::Error::other("the stream was read already"))
    }

    fn unchanged(&self, _: &Node, _: &Node) -> bool {
        false
    }

    fn describe(&self, _: &()) -> String {
        String::from_utf8_lossy(&self.node.name).into_owned()
    }
}

/// Stores the stream as the snapshot's one file: its root tree and counts.
/// A stream that cannot be read to its end leaves no snapshot.
fn read(
    writer: &SnapshotWriter,
    node: Node,
    r: Box<dyn Read + Send>,
    progress: &Progress,
) -> Result<(BlobId, Summary)> {
    let source = StreamSource {
        node,
        stream: Mutex::new(Some(r)),
    };
    let threads = Threads {
        readers: 1,
        storers: cores(),
    };
    let w = walk(writer, &source, (), threads, progress)?;
    match w.errors.into_iter().next() {
        Some((what, why)) => Err(Error::InvalidInput(format!(
            "reading {what}: {why}; no snapshot was written"
        ))),
        None => Ok((w.tree, w.summary)),
    }
}

fn run_command(
    writer: &SnapshotWriter,
    node: Node,
    argv: &[String],
    progress: &Progress,
) -> Result<(BlobId, Summary)> {
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
    let stored = read(writer, node, Box::new(stdout), progress);
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
