//! `cat`: a file's content from a snapshot to stdout, through the shared
//! [`ContentReader`] (chunks fetched a window ahead in parallel). A reader that goes
//! away before the end (`| head`) makes it exit 1 and say so, as `tar` does:
//! a script must not take a cut copy for the whole file.

use std::ffi::OsString;
use std::io::Write;

use anyhow::bail;
use clap::Args;
use klosetfs::format::tree::NodeKind;
use klosetfs::view::content::{ContentReader, WriteError};

use super::spec::resolve;
use super::{Ctx, EXIT_OK};

/// Print a file from a snapshot.
#[derive(Args)]
#[command(after_help = "Example:\n  klosetfs at /srv/backups cat latest:/etc/hosts")]
pub struct CatArgs {
    /// SNAP:PATH of a regular file.
    target: OsString,
}

pub fn run(ctx: &Ctx, a: CatArgs) -> anyhow::Result<u8> {
    let repo = ctx.open_indexed()?;
    let t = resolve(&repo, &a.target)?;
    match t.node.kind {
        NodeKind::File => {}
        NodeKind::Symlink => bail!(
            "{} is a symlink to {}",
            String::from_utf8_lossy(&t.path),
            String::from_utf8_lossy(&t.node.target)
        ),
        _ => bail!("{} is not a regular file", String::from_utf8_lossy(&t.path)),
    }
    let mut out = std::io::stdout().lock();
    let r = ContentReader::of_chunks(&repo, &t.node.content)
        .write_to(&mut out)
        .and_then(|_| out.flush().map_err(WriteError::Write));
    match r {
        Ok(()) => Ok(EXIT_OK),
        Err(WriteError::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Err(super::output::cut_short("the output"))
        }
        Err(WriteError::Write(e)) => Err(e.into()),
        Err(WriteError::Read(e)) => Err(e.into()),
    }
}
