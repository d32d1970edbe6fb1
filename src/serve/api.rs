//! The JSON API under `/api/` that the page uses and scripts can call: list
//! snapshots, list a directory (paged, sorted), fetch a file (HTTP ranges,
//! streamed), a directory as an archive (streamed), search names across
//! snapshots, a path's versions, and what changed between two snapshots
//! (those three, questions across snapshots, in `history`, which builds on
//! this module's replies).
//! Read-only: no route changes the store.
//! Paths are `snap=ID` (an id, a unique prefix of one, or `latest`) plus
//! `path=` percent-encoded bytes (see `paths`).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::paths::{components, encode, query};
use super::{AppState, Shared};
use crate::format::id::SnapshotId;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind};
use crate::util::format_time;
use crate::view::chunk_cache::{chunk_offsets, read_chunks};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/snapshots", get(snapshots))
        .route("/api/ls", get(ls))
        .route("/api/file", get(file))
        .route("/api/archive", get(archive))
}

/// A failed request: its status and a message, sent as `{"error": …}`.
pub(super) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

pub(super) fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        let code = match &e {
            crate::Error::InvalidInput(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, e.to_string())
    }
}

pub(super) type ApiResult<T> = std::result::Result<T, ApiError>;

/// Runs blocking store work off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

pub(super) fn fields(q: Option<String>) -> HashMap<String, Vec<u8>> {
    q.as_deref().map(query).unwrap_or_default()
}

pub(super) fn text(f: &HashMap<String, Vec<u8>>, k: &str) -> Option<String> {
    f.get(k).map(|v| String::from_utf8_lossy(v).into_owned())
}

pub(super) fn number(f: &HashMap<String, Vec<u8>>, k: &str, default: usize) -> ApiResult<usize> {
    match text(f, k) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| bad(format!("{k}={v:?} is not a number"))),
    }
}

impl Shared {
    /// The snapshot `snap=` names, with its index loaded.
    pub(super) fn snapshot(
        &self,
        f: &HashMap<String, Vec<u8>>,
    ) -> ApiResult<(SnapshotId, Snapshot)> {
        let spec = text(f, "snap").ok_or_else(|| bad("snap= is missing"))?;
        let (id, s) = self.repo.resolve_snapshot(&spec)?;
        let mut known = self.known.lock();
        if !known.contains(&id) {
            // Made since the server started: its blobs are in index
            // objects loaded after start-up.
            self.repo.load_index()?;
            known.insert(id);
        }
        Ok((id, s))
    }

    /// The entry `snap=` and `path=` name.
    pub(super) fn node(
        &self,
        f: &HashMap<String, Vec<u8>>,
    ) -> ApiResult<(SnapshotId, Snapshot, Vec<u8>, Node)> {
        let (id, s) = self.snapshot(f)?;
        let raw = f.get("path").cloned().unwrap_or_default();
        let path = components(&raw).map_err(bad)?.join(&b'/');
        let node = self.repo.find_node(&s, &path)?;
        Ok((id, s, path, node))
    }
}

pub(super) fn kind_name(k: NodeKind) -> &'static str {
    match k {
        NodeKind::File => "file",
        NodeKind::Dir => "dir",
        NodeKind::Symlink => "symlink",
        NodeKind::Fifo => "fifo",
        NodeKind::CharDevice => "chardev",
        NodeKind::BlockDevice => "blockdev",
        NodeKind::Socket => "socket",
    }
}

fn entry(n: &Node) -> Value {
    json!({
        "name": String::from_utf8_lossy(&n.name), "raw": encode(&n.name),
        "kind": kind_name(n.kind), "size": n.size, "mode": n.mode & 0o7777,
        "uid": n.uid, "gid": n.gid, "user": n.user, "group": n.group,
        "mtime": n.mtime, "mtime_text": format_time(n.mtime),
        "target": String::from_utf8_lossy(&n.target), "nlink": n.nlink,
    })
}

async fn snapshots(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    blocking(move || {
        let list: Vec<Value> = s
            .repo
            .snapshots()?
            .into_iter()
            .rev()
            .map(|(id, x)| {
                json!({
                    "id": id.to_hex(), "short": id.short(), "time": x.time,
                    "time_text": format_time(x.time), "host": x.host, "user": x.user,
                    "tags": x.tags,
                    "paths": x.paths.iter().map(|p| String::from_utf8_lossy(p)).collect::<Vec<_>>(),
                    "files": x.summary.files, "dirs": x.summary.dirs, "bytes": x.summary.bytes,
                    "parent": x.parent.map(|p| p.to_hex()),
                })
            })
            .collect();
        Ok(Json(Value::Array(list)))
    })
    .await
}

/// Entries per page at most.
const MAX_PAGE: usize = 5000;

async fn ls(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult<Json<Value>> {
    blocking(move || {
        let f = fields(q);
        let (id, _, path, node) = s.node(&f)?;
        let sub = node
            .subtree
            .filter(|_| node.is_dir())
            .ok_or_else(|| bad("not a directory"))?;
        let tree = s.repo.load_tree(&sub)?;
        let offset = number(&f, "offset", 0)?;
        let limit = number(&f, "limit", 1000)?.min(MAX_PAGE);
        let mut order: Vec<&Node> = tree.nodes.iter().collect();
        match text(&f, "sort").as_deref() {
            None | Some("name") => {}
            Some("size") => order.sort_by_key(|n| n.size),
            Some("mtime") => order.sort_by_key(|n| n.mtime),
            Some("kind") => order.sort_by_key(|n| !n.is_dir()),
            Some(o) => return Err(bad(format!("sort={o:?}: name, size, mtime or kind"))),
        }
        if text(&f, "order").as_deref() == Some("desc") {
            order.reverse();
        }
        let entries: Vec<Value> = order
            .iter()
            .skip(offset)
            .take(limit)
            .map(|n| entry(n))
            .collect();
        Ok(Json(json!({
            "snap": id.to_hex(), "path": String::from_utf8_lossy(&path), "raw": encode_path(&path),
            "total": tree.nodes.len(), "offset": offset, "entries": entries,
        })))
    })
    .await
}

pub(super) fn encode_path(p: &[u8]) -> String {
    p.split(|b| *b == b'/')
        .filter(|c| !c.is_empty())
        .map(encode)
        .collect::<Vec<_>>()
        .join("/")
}

/// `bytes=A-B`, `bytes=A-` or `bytes=-N` against a file of `size` bytes:
/// `Ok(None)` for no (or an unusable multi-) range, `Err` when unsatisfiable.
fn byte_range(h: &HeaderMap, size: u64) -> std::result::Result<Option<(u64, u64)>, ()> {
    let Some(v) = h.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| ())?;
            (size.saturating_sub(n), size)
        }
        (a, "") => (a.parse().map_err(|_| ())?, size),
        (a, b) => {
            let a: u64 = a.parse().map_err(|_| ())?;
            let b: u64 = b.parse().map_err(|_| ())?;
            (a, b.saturating_add(1).min(size))
        }
    };
    if start >= end {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// Content types shown in the page; anything else is a download, so a
/// backed-up HTML or SVG file never runs as part of this site.
fn inline_type(name: &[u8]) -> Option<&'static str> {
    let n = String::from_utf8_lossy(name).to_ascii_lowercase();
    let ext = n.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    Some(match ext {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "bmp" => "image/bmp",
        "ico" => "image/x-icon",
        _ => return None,
    })
}

fn disposition(kind: &str, name: &[u8]) -> HeaderValue {
    let ascii: String = String::from_utf8_lossy(name)
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    HeaderValue::from_str(&format!(
        "{kind}; filename=\"{ascii}\"; filename*=UTF-8''{}",
        encode(name)
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// Bytes handed to the HTTP body at a time.
const PIECE: u64 = 1 << 20;

async fn file(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    h: HeaderMap,
) -> ApiResult<Response> {
    let f = fields(q);
    let s2 = s.clone();
    let f2 = f.clone();
    let (_, _, _, node) = blocking(move || s2.node(&f2)).await?;
    if node.kind != NodeKind::File {
        return Err(bad("not a regular file"));
    }
    let size = node.size;
    let range = byte_range(&h, size).map_err(|_| {
        ApiError(
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("the file has {size} bytes"),
        )
    })?;
    let (start, end) = range.unwrap_or((0, size));
    let download = f.contains_key("download");
    let (ctype, kind) = match inline_type(&node.name) {
        Some(t) if !download => (t, "inline"),
        _ if text(&f, "as").as_deref() == Some("text") && !download => {
            ("text/plain; charset=utf-8", "inline")
        }
        _ => ("application/octet-stream", "attachment"),
    };
    let mut r = Response::new(stream_file(s, node.clone(), start, end));
    *r.status_mut() = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let hd = r.headers_mut();
    hd.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    hd.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    hd.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    hd.insert(header::CONTENT_DISPOSITION, disposition(kind, &node.name));
    // Snapshot content never changes; still, nothing it holds may run here.
    hd.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    if range.is_some() {
        let cr = format!("bytes {start}-{}/{size}", end - 1);
        hd.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&cr).expect("ascii"),
        );
    }
    Ok(r)
}

/// The body of a file read: a thread reads pieces through the chunk cache
/// (fetching the next chunks ahead) and hands them over a short queue, so
/// memory stays a few pieces whatever the file's size.
fn stream_file(s: Arc<Shared>, node: Node, start: u64, end: u64) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let offsets = chunk_offsets(&node.content);
        let mut at = start;
        while at < end {
            let to = (at + PIECE).min(end);
            // The chunks of the next two pieces, fetched while this one is sent.
            let first = offsets.partition_point(|o| *o <= to).saturating_sub(1);
            let last = offsets.partition_point(|o| *o < (to + 2 * PIECE).min(end));
            if first < last && last <= node.content.len() {
                let ids = node.content[first..last].iter().map(|c| c.id).collect();
                s.cache.spawn_prefetch(ids);
            }
            let piece = read_chunks(&s.cache, &node.content, &offsets, at, to)
                .map(Bytes::from)
                .map_err(std::io::Error::other);
            let failed = piece.is_err();
            if tx.blocking_send(piece).is_err() || failed {
                return; // the client went away, or the read failed
            }
            at = to;
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|x| (x, rx))
    }))
}

/// A `Write` whose bytes become an HTTP body (the archive writers are
/// synchronous): each buffer goes over a short queue to the async side.
struct BodyWriter(tokio::sync::mpsc::Sender<std::io::Result<Bytes>>);

impl Write for BodyWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(b)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))?;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn archive(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let f = fields(q);
    let format = text(&f, "format").unwrap_or_else(|| "tar.gz".into());
    let ext = match format.as_str() {
        "tar" | "tar.gz" | "tar.zst" | "zip" => format.clone(),
        o => return Err(bad(format!("format={o:?}: tar, tar.gz, tar.zst or zip"))),
    };
    let s2 = s.clone();
    let (id, _, path, node) = blocking(move || s2.node(&f)).await?;
    let base = path
        .rsplit(|b| *b == b'/')
        .next()
        .filter(|b| !b.is_empty())
        .map(|b| b.to_vec())
        .unwrap_or_else(|| id.short().into_bytes());
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
    let repo = s.repo.clone();
    tokio::task::spawn_blocking(move || {
        // A buffer in front of the queue: the archive writers make many
        // small writes (headers), the body wants pieces.
        let out = std::io::BufWriter::with_capacity(256 << 10, BodyWriter(tx.clone()));
        let r: std::result::Result<(), Box<dyn std::error::Error>> = (|| {
            match ext.as_str() {
                "tar" => crate::ops::archive::write_tar(&repo, &node, out)?
                    .0
                    .flush()?,
                "tar.gz" => {
                    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
                    crate::ops::archive::write_tar(&repo, &node, gz)?
                        .0
                        .finish()?
                        .flush()?
                }
                "tar.zst" => {
                    let z = zstd::Encoder::new(out, 3)?;
                    crate::ops::archive::write_tar(&repo, &node, z)?
                        .0
                        .finish()?
                        .flush()?
                }
                _ => crate::ops::archive::write_zip(&repo, &node, out)?
                    .0
                    .flush()?,
            }
            Ok(())
        })();
        if let Err(e) = r {
            // The status is long sent: cut the body, so the client sees a
            // broken transfer rather than a short archive.
            tracing::error!("archive: {e}");
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let mut name = base;
    name.extend_from_slice(b".");
    name.extend_from_slice(format.as_bytes());
    let mut r = Response::new(Body::from_stream(futures_util::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|x| (x, rx)) },
    )));
    let hd = r.headers_mut();
    hd.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    hd.insert(
        header::CONTENT_DISPOSITION,
        disposition("attachment", &name),
    );
    Ok(r)
}

/// Search results at most.
#[cfg(test)]
mod tests {
    use super::*;

    fn range(v: &str, size: u64) -> std::result::Result<Option<(u64, u64)>, ()> {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
        byte_range(&h, size)
    }

    #[test]
    fn reads_byte_ranges() {
        assert_eq!(range("bytes=0-9", 100), Ok(Some((0, 10))));
        assert_eq!(range("bytes=90-", 100), Ok(Some((90, 100))));
        assert_eq!(range("bytes=-10", 100), Ok(Some((90, 100))));
        assert_eq!(range("bytes=50-1000", 100), Ok(Some((50, 100))));
        assert_eq!(range("bytes=100-", 100), Err(()));
        assert_eq!(range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(range("items=0-1", 100), Ok(None));
        assert_eq!(range("bytes=x-1", 100), Err(()));
    }

    #[test]
    fn never_shows_active_content_inline() {
        assert_eq!(inline_type(b"a.PNG"), Some("image/png"));
        for n in [&b"x.html"[..], b"x.svg", b"x.js", b"noext"] {
            assert_eq!(inline_type(n), None);
        }
    }
}
