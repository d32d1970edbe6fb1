//! `ui`: the store seen from a web browser or a script, without FUSE. A small
//! HTTP server on loopback (axum on a tokio runtime of its own) serves one
//! embedded page, the JSON API it uses (`/api/…`, [`api`]) and a read-only
//! WebDAV view of the whole-store layout (`/dav/…`, [`dav`]). Every file read
//! goes through the same chunk cache and range reader as the mounts.
//!
//! Every request needs the server's secret token: as the `kt` cookie (set when
//! the printed `/?token=…` URL is opened), as `Authorization: Bearer TOKEN`, or
//! as the password of HTTP Basic auth. Nothing here changes the store.

mod api;
mod dav;
mod dav_write;
pub mod drive;
mod history;
mod limit;
mod paths;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;

use crate::error::{Error, Result};
use crate::repo::Repo;
use crate::view::chunk_cache::ChunkCache;

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// The secret every request must carry.
    pub token: String,
    /// Chunk cache size in bytes.
    pub cache_bytes: usize,
    /// Allow a non-loopback address without TLS.
    pub insecure: bool,
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<tls::TlsFiles>,
    /// Host names (besides IP addresses, `localhost` and this machine's
    /// name) that requests may carry in `Host:`.
    pub allow_hosts: Vec<String>,
    /// Requests a second each client address may make (`--max-rate`).
    pub max_rate: Option<u32>,
}

/// What every handler shares.
pub(crate) struct Shared {
    pub repo: Arc<Repo>,
    pub cache: Arc<ChunkCache>,
    dav: dav_server::DavHandler,
    /// The snapshot ids whose index was loaded: a snapshot made since
    /// start-up reloads the index before its blobs are read.
    pub known: parking_lot::Mutex<std::collections::HashSet<crate::format::id::SnapshotId>>,
}

type AppState = Arc<Shared>;

/// A fresh random token (32 hex digits).
pub fn new_token() -> Result<String> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|e| Error::InvalidInput(format!("no randomness: {e}")))?;
    Ok(hex::encode(b))
}

/// Binds, calls `ready` with the base URL it serves (`http://` or
/// `https://` and the address), then serves until the process ends.
pub fn serve(repo: Arc<Repo>, opts: ServeOptions, ready: impl FnOnce(String)) -> Result<()> {
    let gate = Gate::new(&opts)?;
    // One view of the store for WebDAV (the whole-store mount's layout) and
    // one chunk cache for every read.
    let vfs = Arc::new(crate::view::vfs::Vfs::whole_store(
        repo.clone(),
        crate::view::vfs::VfsOptions {
            cache_bytes: opts.cache_bytes,
            ..Default::default()
        },
    )?);
    let cache = vfs.chunk_cache().clone();
    let dav = dav_server::DavHandler::builder()
        .filesystem(Box::new(dav::DavView::new(vfs)))
        .strip_prefix("/dav")
        .methods(dav_server::DavMethodSet::WEBDAV_RO)
        .autoindex(true)
        .build_handler();
    let known = repo.snapshots()?.into_iter().map(|(id, _)| id).collect();
    let shared = Arc::new(Shared {
        repo,
        cache,
        dav,
        known: parking_lot::Mutex::new(known),
    });
    let app = router(shared).layer(axum::middleware::from_fn_with_state(gate.clone(), auth));
    run_http(&opts, &gate, app, ready, std::future::pending())
}

/// Binds `opts.listen`, calls `ready` with the base URL it serves
/// (`http://` or `https://` and the address), then serves `app` (over TLS
/// if `gate` says so) until `stop` completes and open requests are done.
pub(crate) fn run_http(
    opts: &ServeOptions,
    gate: &Gate,
    app: Router,
    ready: impl FnOnce(String),
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the web server", e))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(opts.listen).await?;
        let addr = listener.local_addr()?;
        let host = url_host(addr);
        match gate.tls.clone() {
            Some(cfg) => {
                let listener = tls::TlsListener::new(listener, cfg)?;
                ready(format!("https://{host}"));
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<limit::Peer>(),
                )
                .with_graceful_shutdown(stop)
                .await
            }
            None => {
                ready(format!("http://{host}"));
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<limit::Peer>(),
                )
                .with_graceful_shutdown(stop)
                .await
            }
        }
    })
    .map_err(|e| Error::io(format!("serving on {}", opts.listen), e))
}

/// Who may come in: the token every request must carry, the host names it
/// may use, and the TLS it is served with.
pub(crate) struct Gate {
    token: String,
    /// Names accepted in `Host:` (lower case), besides IP addresses.
    hosts: Vec<String>,
    /// Served over TLS (the cookie is then marked `Secure`).
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Wrong tokens per client address.
    failures: limit::Limiter,
    /// Requests per client address, with `--max-rate`.
    requests: Option<limit::Limiter>,
}

impl Gate {
    /// Checks `opts` (a token long enough; TLS off loopback unless
    /// `insecure`) and loads its TLS files.
    pub(crate) fn new(opts: &ServeOptions) -> Result<Arc<Self>> {
        if !opts.listen.ip().is_loopback() && !opts.insecure && opts.tls.is_none() {
            return Err(Error::InvalidInput(format!(
                "{} is not a loopback address: the token would cross the network in clear; \
                 give --tls-cert and --tls-key, or pass --insecure to do it anyway",
                opts.listen
            )));
        }
        if opts.token.len() < 16 {
            return Err(Error::InvalidInput(
                "the token must have at least 16 characters".into(),
            ));
        }
        let mut hosts: Vec<String> = opts
            .allow_hosts
            .iter()
            .map(|n| n.to_ascii_lowercase())
            .collect();
        hosts.push("localhost".into());
        hosts.push(crate::util::hostname().to_ascii_lowercase());
        Ok(Arc::new(Gate {
            token: opts.token.clone(),
            hosts,
            tls: opts.tls.as_ref().map(tls::config).transpose()?,
            failures: limit::Limiter::new(1.0 / 3.0, 20),
            requests: opts
                .max_rate
                .map(|n| limit::Limiter::new(f64::from(n.max(1)), n.max(1))),
        }))
    }
}

/// The host and port a browser elsewhere can use: listening on every
/// address (`0.0.0.0`, `::`) names this machine instead, since such an
/// address only means "any" to the server.
fn url_host(addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("{}:{}", crate::util::hostname(), addr.port())
    } else {
        addr.to_string()
    }
}

fn router(shared: AppState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/dav", any(webdav))
        .route("/dav/", any(webdav))
        .route("/dav/{*path}", any(webdav))
        .merge(api::routes())
        .merge(history::routes())
        .fallback(not_found)
        .with_state(shared)
}

const PAGE: &str = include_str!("page.html");

/// The policy of every answer that is not the page: no script, no plug-in,
/// no origin, nothing loaded. Inline styles stay, for the folder listings.
const SANDBOX: &str = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:";

async fn page() -> Response {
    let mut r = PAGE.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             img-src 'self' blob:; frame-ancestors 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn webdav(State(s): State<AppState>, req: Request) -> Response {
    let mut r = s.dav.handle(req).await.into_response();
    inert_dav(r.headers_mut());
    r
}

/// The one content type `dav-server` gives its folder listings.
const LISTING_TYPE: &str = "text/html; charset=utf-8";

/// Makes a WebDAV answer harmless in a browser without changing its bytes:
/// a file whose type a browser would run (HTML, SVG, XML, scripts…) is sent
/// as an attachment, so opening its link downloads it instead of running it
/// on this origin (where the `kt` cookie would let it call `/api/`). The
/// `sandbox` policy that [`auth`] adds to every answer is the second wall.
/// WebDAV clients ignore both headers.
pub(crate) fn inert_dav(h: &mut HeaderMap) {
    let Some(t) = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return;
    };
    if t == LISTING_TYPE || !active_type(t) {
        return;
    }
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment"),
    );
}

/// Whether a browser could run something in a response of this type: every
/// type but a short list of passive ones (images other than SVG, audio,
/// video, plain text, octet-stream) counts as active.
fn active_type(t: &str) -> bool {
    let t = t
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let passive = (t.starts_with("image/") && !t.contains("svg"))
        || t.starts_with("audio/")
        || t.starts_with("video/")
        || t == "text/plain"
        || t == "application/octet-stream";
    !passive
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// Equal in time whatever the input, so the token cannot be guessed byte by
/// byte from response times.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token a request carries, if any: cookie `kt`, Bearer, or Basic password.
fn presented(headers: &HeaderMap) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for c in headers.get_all(header::COOKIE) {
        for part in c.as_bytes().split(|b| *b == b';') {
            let part = part.trim_ascii();
            if let Some(v) = part.strip_prefix(b"kt=") {
                out.push(v.to_vec());
            }
        }
    }
    if let Some(a) = headers.get(header::AUTHORIZATION) {
        let a = a.as_bytes();
        if let Some(t) = a.strip_prefix(b"Bearer ") {
            out.push(t.trim_ascii().to_vec());
        } else if let Some(b) = a.strip_prefix(b"Basic ") {
            use base64::Engine;
            if let Ok(d) = base64::engine::general_purpose::STANDARD.decode(b.trim_ascii()) {
                if let Some(i) = d.iter().position(|c| *c == b':') {
                    out.push(d[i + 1..].to_vec());
                }
            }
        }
    }
    out
}

/// Whether the `Host:` of a request names this server: an IP address, or a
/// name in `hosts`. A page on some other name that resolves here (DNS
/// rebinding) is refused before its token is even looked at. A request
/// without `Host:` (HTTP/1.0) comes from no browser and passes.
fn host_allowed(headers: &HeaderMap, hosts: &[String]) -> bool {
    let Some(h) = headers.get(header::HOST) else {
        return true;
    };
    let Ok(h) = h.to_str() else {
        return false;
    };
    let name = if let Some(rest) = h.strip_prefix('[') {
        // [v6]:port
        match rest.split_once(']') {
            Some((ip, _)) => return ip.parse::<std::net::Ipv6Addr>().is_ok(),
            None => return false,
        }
    } else {
        h.rsplit_once(':').map(|(n, _)| n).unwrap_or(h)
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::Ipv4Addr>().is_ok() || hosts.contains(&name)
}

pub(crate) async fn auth(State(s): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<axum::extract::ConnectInfo<limit::Peer>>()
        .map(|c| c.0 .0.ip());
    if let (Some(ip), Some(l)) = (ip, &s.requests) {
        if !l.take(ip) {
            return too_many(l);
        }
    }
    // A client that gave wrong tokens too often is not heard until its
    // bucket refills, whatever it sends now.
    if let Some(ip) = ip {
        if !s.failures.allows(ip) {
            tracing::warn!("{ip}: too many wrong tokens; refused for a while");
            return too_many(&s.failures);
        }
    }
    if !host_allowed(req.headers(), &s.hosts) {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "this server answers only to its IP addresses, localhost, this machine's \
             name and the names given with --allow-host\n",
        )
            .into_response();
    }
    let token = s.token.as_bytes();
    // Opening the printed URL: trade the token in the query for a cookie and
    // drop it from the address bar (and from the history).
    if req.uri().path() == "/" {
        if let Some(q) = req.uri().query() {
            let given = paths::query(q).remove("token").unwrap_or_default();
            if !given.is_empty() {
                if !same(&given, token) {
                    return wrong_token(&s, ip);
                }
                let secure = if s.tls.is_some() { "; Secure" } else { "" };
                let cookie = format!("kt={}; HttpOnly; SameSite=Strict; Path=/{secure}", s.token);
                return (
                    StatusCode::SEE_OTHER,
                    [
                        (header::LOCATION, "/".to_string()),
                        (header::SET_COOKIE, cookie),
                    ],
                )
                    .into_response();
            }
        }
    }
    let given = presented(req.headers());
    if given.iter().any(|t| same(t, token)) {
        let mut r = next.run(req).await;
        r.headers_mut().insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        r.headers_mut().insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        // Everything but the page itself may carry snapshot bytes (files,
        // archives, names in listings and JSON): none of it may run here.
        // A sandboxed answer has no origin, so even a script that got past
        // the type checks could not use the cookie.
        if !r.headers().contains_key(header::CONTENT_SECURITY_POLICY) {
            r.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(SANDBOX),
            );
        }
        return r;
    }
    // No credentials is how many clients start (they send them after the
    // 401); only a wrong token counts against the address.
    if given.is_empty() {
        unauthorized()
    } else {
        wrong_token(&s, ip)
    }
}

fn wrong_token(s: &Gate, ip: Option<std::net::IpAddr>) -> Response {
    if let Some(ip) = ip {
        s.failures.take(ip);
    }
    unauthorized()
}

fn too_many(l: &limit::Limiter) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, l.retry_after().to_string())],
        "too many requests from this address; retry later\n",
    )
        .into_response()
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"klosetfs\"")],
        "a token is needed: open the URL `klosetfs ui` printed, \
         or send it as a Bearer token or the Basic auth password\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_to_its_own_names() {
        let hosts = vec!["localhost".to_string(), "backup.example".to_string()];
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static(v));
            host_allowed(&h, &hosts)
        };
        for ok in [
            "127.0.0.1:8080",
            "10.1.2.3",
            "[::1]:443",
            "localhost:1",
            "LOCALHOST",
            "backup.example:8443",
            "backup.example.",
        ] {
            assert!(with(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "[zz]:1",
            "localhost.evil",
        ] {
            assert!(!with(bad), "{bad}");
        }
        assert!(host_allowed(&HeaderMap::new(), &hosts));
    }

    #[test]
    fn active_types_are_sent_as_attachments() {
        for t in [
            "text/html",
            "image/svg+xml",
            "application/xml",
            "text/javascript",
            "application/xhtml+xml",
            "application/pdf",
        ] {
            assert!(active_type(t), "{t}");
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(t));
            inert_dav(&mut h);
            assert_eq!(h[header::CONTENT_DISPOSITION], "attachment", "{t}");
        }
        for t in [
            "image/png",
            "text/plain; charset=utf-8",
            "video/mp4",
            "application/octet-stream",
            LISTING_TYPE,
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(t));
            inert_dav(&mut h);
            assert!(!h.contains_key(header::CONTENT_DISPOSITION), "{t}");
        }
    }

    #[test]
    fn compares_tokens_whole() {
        assert!(same(b"abcdef", b"abcdef"));
        assert!(!same(b"abcdef", b"abcdeg"));
        assert!(!same(b"abc", b"abcdef"));
        assert!(!same(b"", b"a"));
    }

    #[test]
    fn finds_the_token_in_cookie_bearer_and_basic() {
        use base64::Engine;
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; kt=tok1 ; c=d"),
        );
        assert_eq!(presented(&h), vec![b"tok1".to_vec()]);
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer tok2"),
        );
        assert_eq!(presented(&h), vec![b"tok2".to_vec()]);
        let basic = base64::engine::general_purpose::STANDARD.encode("anyone:tok:3");
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {basic}")).unwrap(),
        );
        assert_eq!(presented(&h), vec![b"tok:3".to_vec()]);
    }
}
