//! `ui`: serve the store to a web browser (and scripts) on loopback.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use klosetfs::serve::tls::TlsFiles;
use klosetfs::serve::{new_token, serve, ServeOptions};

use super::{Ctx, EXIT_OK};

/// Browse snapshots in a web browser: list, browse, preview, download, search,
/// every version of a path; and read-only WebDAV under /dav/.
#[derive(Args)]
#[command(after_help = "Examples:
  klosetfs at /srv/backups ui
  klosetfs at /srv/backups ui --listen 127.0.0.1:8080 --no-open --token-file ~/.klosetfs-ui-token
  klosetfs at /srv/backups ui --listen 0.0.0.0:8443 --tls-cert cert.pem --tls-key key.pem

It prints a URL holding a secret token (on 0.0.0.0 or [::], with this
machine's host name); opening it sets a cookie, so keep the URL to yourself.
Scripts send the token as `Authorization: Bearer TOKEN` and use the JSON API
under /api/ (docs/integration.md lists it), e.g.
  curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8080/api/snapshots
WebDAV clients (Finder, Explorer, davfs2, rclone, cadaver) browse and copy out
read-only under /dav/ (the whole-store mount's layout), with the token as the
password of any user name. Nothing it serves can change the store. Stop it with Ctrl-C.")]
pub struct UiArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Do not open a browser.
    #[arg(long)]
    no_open: bool,
    /// Memory for file chunks read through the server (e.g. 256M). Decoded
    /// directories take up to 64 MiB more, whatever this is.
    #[arg(long, default_value = "64M")]
    cache_size: String,
}

/// Where and how a server listens, and the token it asks for (`ui` and
/// `serve`).
#[derive(Args)]
pub struct ServerArgs {
    /// Address and port to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Read the token from this file instead of making a new one at each
    /// start (at least 16 characters; surrounding whitespace is ignored).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Serve HTTPS with this certificate (a PEM file: the server's
    /// certificate first, then any intermediates). Needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (a PEM file, PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Listen on a non-loopback address without TLS, although the token then
    /// crosses the network in clear.
    #[arg(long)]
    insecure: bool,
    /// A host name clients may use to reach the server (repeatable). IP
    /// addresses, `localhost` and this machine's name always work; any
    /// other name in a request's `Host:` is refused, so a web page on a
    /// name that resolves here (DNS rebinding) gets nothing.
    #[arg(long, value_name = "NAME")]
    allow_host: Vec<String>,
    /// Requests a second each client address may make (a second's worth at
    /// once); more get 429 and a Retry-After. Wrong tokens are always
    /// limited: 20, then one every 3 seconds.
    #[arg(long, value_name = "N")]
    max_rate: Option<u32>,
}

impl ServerArgs {
    /// The server's options: the token read from --token-file or made anew.
    pub fn options(&self, cache_bytes: usize) -> anyhow::Result<ServeOptions> {
        let token = match &self.token_file {
            Some(f) => std::fs::read_to_string(f)
                .with_context(|| format!("reading the token from {}", f.display()))?
                .trim()
                .to_string(),
            None => new_token()?,
        };
        if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic() && b != b';') {
            bail!("the token must be at least 16 printable characters, without `;`");
        }
        Ok(ServeOptions {
            listen: self.listen,
            token,
            cache_bytes,
            insecure: self.insecure,
            allow_hosts: self.allow_host.clone(),
            max_rate: self.max_rate,
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
        })
    }
}

pub fn run(ctx: &Ctx, a: UiArgs) -> anyhow::Result<u8> {
    let opts = a
        .server
        .options(klosetfs::util::parse_size(&a.cache_size)? as usize)?;
    let token = opts.token.clone();
    let repo = ctx.open_indexed()?;
    super::warn_damaged_snapshots(&repo);
    let open = !a.no_open;
    serve(repo, opts, move |base| {
        let url = format!("{base}/?token={token}");
        println!("klosetfs ui: {url}");
        let _ = std::io::stdout().flush();
        let graphical =
            std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
        if open && graphical {
            let _ = std::process::Command::new("xdg-open")
                .arg(&url)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
        }
    })?;
    Ok(EXIT_OK)
}
