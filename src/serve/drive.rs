//! `serve --writable`: a network drive that backs up. A WebDAV server (class
//! 1 and 2: locks are kept in memory) over a writable session, so dragging a
//! folder onto a mapped drive in Finder, Explorer or GNOME Files, or an
//! `rclone copy`, is a backup: every upload that completes is a closed file
//! of the session (journaled, so it survives a `kill -9`), and snapshots are
//! committed at an interval, on a request to `/.klosetfs-commit`, and when
//! the server stops. The same token, host check, TLS rule and inert answers
//! as `ui` guard it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;

use dav_server::davpath::DavPath;

use super::dav::blocking;
use super::dav_write::{DavWritable, ASKED_MTIME};
use super::{auth, inert_dav, run_http, Gate, ServeOptions};
use crate::error::{Error, Result};
use crate::format::id::SnapshotId;
use crate::writable::session::{Finished, Session};
use crate::writable::{WritableFs, COMMIT_FILE};

mod times;

/// Requests served at once; more wait their turn (a client cannot make the
/// server take on unbounded work).
const MAX_REQUESTS: usize = 64;

struct Drive {
    dav: dav_server::DavHandler,
    files: DavWritable,
    fs: Arc<WritableFs>,
    committed: Box<dyn Fn(SnapshotId) + Send + Sync>,
    slots: Arc<tokio::sync::Semaphore>,
}

/// Serves `session` until SIGINT, SIGTERM or SIGHUP, then lets open
/// requests finish and ends the session (its last commit). `ready` gets the
/// base URL; `committed` every snapshot a request to the commit URL made.
pub fn serve_writable(
    session: Session,
    opts: &ServeOptions,
    ready: impl FnOnce(String),
    committed: impl Fn(SnapshotId) + Send + Sync + 'static,
) -> Result<Finished> {
    let gate = Gate::new(opts)?;
    let fs = session.fs().clone();
    let files = DavWritable::new(fs.clone());
    let dav = dav_server::DavHandler::builder()
        .filesystem(Box::new(files.clone()))
        .locksystem(dav_server::memls::MemLs::new())
        .methods(dav_server::DavMethodSet::WEBDAV_RW)
        .autoindex(true)
        .build_handler();
    let drive = Arc::new(Drive {
        dav,
        files,
        fs,
        committed: Box::new(committed),
        slots: Arc::new(tokio::sync::Semaphore::new(MAX_REQUESTS)),
    });
    let commit_path = format!("/{}", String::from_utf8_lossy(COMMIT_FILE));
    let app = Router::new()
        .route(&commit_path, any(commit))
        .fallback(webdav)
        .layer(axum::middleware::from_fn_with_state(
            drive.clone(),
            one_slot,
        ))
        .layer(axum::middleware::from_fn_with_state(gate.clone(), auth))
        .with_state(drive);
    let (stop, signals) = stop_on_signal()?;
    let served = run_http(opts, &gate, app, ready, stop);
    signals.close();
    served?;
    session.finish()
}

/// A future that completes at the first SIGINT, SIGTERM or SIGHUP, and the
/// handle that stops listening for them.
fn stop_on_signal() -> Result<(
    impl std::future::Future<Output = ()> + Send + 'static,
    signal_hook::iterator::Handle,
)> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| Error::io("installing signal handlers", e))?;
    let handle = signals.handle();
    let notify = Arc::new(tokio::sync::Notify::new());
    let n = notify.clone();
    std::thread::Builder::new()
        .name("klosetfs-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                tracing::info!("signal {sig}: stopping the server");
                n.notify_one();
            }
        })
        .map_err(|e| Error::io("starting the signal thread", e))?;
    Ok((async move { notify.notified().await }, handle))
}

async fn one_slot(State(d): State<Arc<Drive>>, req: Request, next: Next) -> Response {
    let Ok(_slot) = d.slots.clone().acquire_owned().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    next.run(req).await
}

/// `GET` or `POST` of `/.klosetfs-commit`: commits what changed and answers
/// the snapshot's id (the FUSE mount's control file, for WebDAV).
async fn commit(State(d): State<Arc<Drive>>, req: Request) -> Response {
    if req.method() != Method::GET && req.method() != Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, POST")],
        )
            .into_response();
    }
    let fs = d.fs.clone();
    match tokio::task::spawn_blocking(move || fs.commit()).await {
        Ok(Ok(id)) => {
            (d.committed)(id);
            (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{}\n", id.to_hex()),
            )
                .into_response()
        }
        Ok(Err(e)) => {
            tracing::error!("commit: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the commit failed ({e}); everything stays in the spool\n"),
            )
                .into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn webdav(State(d): State<Arc<Drive>>, req: Request) -> Response {
    if req.method().as_str() == "PROPPATCH" {
        return proppatch(d, req).await;
    }
    dav(&d, req).await
}

/// dav-server's answer to `req`, with the time `X-OC-Mtime` asked for.
async fn dav(d: &Drive, req: Request) -> Response {
    let mtime = times::oc_mtime(req.headers());
    let put = req.method() == Method::PUT;
    let mut r = ASKED_MTIME
        .scope(mtime, d.dav.handle(req))
        .await
        .into_response();
    if put && mtime.is_some() && r.status().is_success() {
        // What ownCloud answers when it kept the time; clients check it.
        r.headers_mut()
            .insert("x-oc-mtime", HeaderValue::from_static("accepted"));
    }
    inert_dav(r.headers_mut());
    r
}

/// A `PROPPATCH`: dav-server sets the dead properties; the times it would
/// not apply (`Win32LastModifiedTime`, `getlastmodified`) are applied here
/// once it has accepted the rest, and `getlastmodified` gets its own status.
async fn proppatch(d: Arc<Drive>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    // dav-server's own bound on an XML body.
    let Ok(bytes) = axum::body::to_bytes(body, 65_536).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let Some((asked, rewritten)) = times::read_proppatch(&bytes) else {
        return dav(&d, Request::from_parts(parts, bytes.into())).await;
    };
    let Ok(path) = DavPath::from_uri(&parts.uri) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let body = rewritten.map_or(bytes.into(), Into::into);
    let r = dav(&d, Request::from_parts(parts, body)).await;
    if r.status() != StatusCode::MULTI_STATUS {
        return r;
    }
    let (mut head, body) = r.into_parts();
    let Ok(answer) = axum::body::to_bytes(body, 1 << 20).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = if !times::all_set(&answer) {
        "424 Failed Dependency"
    } else {
        let files = d.files.clone();
        let p = path.as_bytes().to_vec();
        let applied = blocking(move || files.set_times(&p, asked.atime, asked.mtime)).await;
        match applied {
            Ok(()) => "200 OK",
            Err(e) => {
                tracing::warn!(
                    "setting the times of {}: {e:?}",
                    String::from_utf8_lossy(path.as_bytes())
                );
                "409 Conflict"
            }
        }
    };
    let answer = if asked.getlastmodified {
        times::with_getlastmodified(&answer, status)
    } else {
        answer
    };
    head.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(head, answer.into())
}
