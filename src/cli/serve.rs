//! `serve --writable`: a WebDAV network drive that backs up what is copied in.

use std::io::Write;

use anyhow::bail;
use clap::Args;
use klosetfs::serve::drive::serve_writable;
use klosetfs::writable::session::Finished;

use super::mount::{parse_size, start_session, WritableArgs};
use super::ui::ServerArgs;
use super::{Ctx, EXIT_OK};

/// Serve a writable WebDAV drive: files copied in (Finder, Explorer, GNOME
/// Files, davfs2, rclone) are backed up, as with `mount --writable`.
#[derive(Args)]
#[command(after_help = "Examples:
  klosetfs at /srv/backups serve --writable --listen 127.0.0.1:8090 --token-file ~/.klosetfs-dav-token
  rclone copy ~/Documents :webdav:Documents --webdav-url http://127.0.0.1:8090 \\
      --webdav-vendor owncloud --webdav-user me --webdav-pass \"$(rclone obscure \"$TOKEN\")\"
  curl -u me:$TOKEN -X POST http://127.0.0.1:8090/.klosetfs-commit   # commit now

Every upload that completes is kept (it survives a crash of the server: the
next `serve` or `recover` commits it); one cut off leaves nothing. A snapshot
is committed at --commit-interval, on a GET or POST of /.klosetfs-commit
(which answers its id), and when the server stops (Ctrl-C, SIGTERM), which
prints it. The token is the password of any user name. WebDAV carries no
modes or owners: new files are 0644, folders 0755, owned by the server's
user; mtimes sent as X-OC-Mtime (rclone --webdav-vendor owncloud) are kept.")]
pub struct ServeArgs {
    /// Serve the writable namespace (a tree to copy files into). Required:
    /// `ui` serves the store read-only under /dav/.
    #[arg(long)]
    writable: bool,
    #[command(flatten)]
    server: ServerArgs,
    /// Memory for chunks of files read back through the server, e.g. 64M.
    #[arg(long, default_value = "32M")]
    cache_size: String,
    #[command(flatten)]
    session: WritableArgs,
}

pub fn run(ctx: &Ctx, a: ServeArgs) -> anyhow::Result<u8> {
    if !a.writable {
        bail!("`serve` needs --writable (`ui` serves the store read-only under /dav/)");
    }
    let cache = parse_size(&a.cache_size)?;
    let opts = a.server.options(cache)?;
    let repo = ctx.open_indexed()?;
    let key = format!("webdav:{}", opts.listen);
    let session = start_session(
        ctx,
        &a.session,
        repo,
        cache,
        std::path::Path::new(&key),
        key.as_bytes(),
    )?;
    let token = opts.token.clone();
    let quiet = ctx.global.quiet;
    let finished = serve_writable(
        session,
        &opts,
        move |base| {
            // The URL first, alone on its line: scripts read it.
            println!("{base}/");
            let _ = std::io::stdout().flush();
            if !quiet {
                eprintln!(
                    "klosetfs: writable WebDAV on {base}/ (any user name, the token as password{}); \
                     Ctrl-C to commit and stop",
                    if a.server.token_file.is_some() { "" } else { ": printed below" }
                );
                if a.server.token_file.is_none() {
                    eprintln!("token: {token}");
                }
            }
        },
        |id| {
            let _ = writeln!(std::io::stdout(), "snapshot {}", id.to_hex());
        },
    )?;
    match finished {
        Finished::Committed(id) | Finished::AlreadyCommitted(id) => {
            outln!("snapshot {}", id.to_hex())
        }
        Finished::Unchanged => eprintln!("klosetfs: nothing changed; no snapshot written"),
    }
    Ok(EXIT_OK)
}
