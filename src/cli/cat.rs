//! `cat`: a file's content from a snapshot to stdout, with chunks fetched ahead
//! in parallel so the pipe never waits on one decrypt. A reader that goes
//! away before the end (`| head`) makes it exit 1 and say so, as `tar` does:
//! a script must not take a cut copy for the whole file.

use std::ffi::OsString;
use std::io::Write;

use anyhow::bail;
use clap::Args;
use klosetfs::format::blob::BlobType;
use klosetfs::format::tree::NodeKind;
use rayon::prelude::*;

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
    let window = rayon::current_num_threads() * 2;
    for group in t.node.content.chunks(window) {
        let blobs: Vec<_> = group
            .par_iter()
            .map(|c| repo.read_blob(BlobType::Data, &c.id))
            .collect::<Result<_, _>>()?;
        for b in blobs {
            if let Err(e) = out.write_all(&b) {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Err(super::output::cut_short("the output"));
                }
                return Err(e.into());
            }
        }
    }
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Err(super::output::cut_short("the output"))
        }
        r => r.map(|_| EXIT_OK).map_err(Into::into),
    }
}
